//! A real Prometheus on loopback for the metric gate tests, and [`Exporter`], the fixture it
//! scrapes: an error counter per cluster that grows by a set step at every scrape.
//! Prometheus is the Debian package's binary (`.ci/run` installs it): without it the test
//! says SKIPPED and returns, except under `$CI`, where its absence fails the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::{free_port, wait};

/// The name of the fixture's counter.
pub const ERRORS: &str = "stackgres_errors_total";

/// `prometheus` on `PATH`, if any.
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
}

/// Serves `/metrics` on loopback: `stackgres_errors_total{cluster="<name>"}` for each
/// cluster, each scrape `step` higher than the last.
pub struct Exporter {
    /// `127.0.0.1:<port>`.
    pub target: String,
}

impl Exporter {
    pub fn start(clusters: &[String], step: f64) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let counts: Arc<Mutex<BTreeMap<String, f64>>> = Arc::new(Mutex::new(
            clusters.iter().map(|c| (c.clone(), 0.0)).collect(),
        ));
        // Lives as long as the test process: one blocked thread on a loopback port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                // The request head, to its empty line; Prometheus sends no body.
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = {
                    let mut counts = counts.lock().unwrap();
                    let mut body = format!("# TYPE {ERRORS} counter\n");
                    for (cluster, n) in counts.iter_mut() {
                        body.push_str(&format!("{ERRORS}{{cluster=\"{cluster}\"}} {n}\n"));
                        *n += step;
                    }
                    body
                };
                let _ = write!(
                    &stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Exporter { target }
    }
}

/// A Prometheus process scraping one target every 500 ms; killed on drop.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `target` and waits until it answers; `None` (after saying
    /// SKIPPED) when it is not installed and `$CI` is not set.
    pub async fn start(target: &str) -> Option<Prometheus> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus is not on PATH (.ci/run installs the Debian package)"
            );
            eprintln!("SKIPPED: prometheus is not on PATH (apt-get install -y prometheus)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 500ms, scrape_timeout: 400ms, evaluation_interval: 500ms}}\nscrape_configs:\n  - job_name: fixture\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait::until("Prometheus ready", || async {
            psql_fleet::cli::status::get(&prometheus.url, "/-/ready")
                .await
                .is_ok()
        })
        .await;
        Some(prometheus)
    }

    /// Waits until the instant query `promql` has a sample for each of `clusters`.
    pub async fn wait_for_samples(&self, promql: &str, clusters: &[String]) {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        wait::until(&format!("{promql} to have data"), || async {
            let Ok(body) = psql_fleet::cli::status::get(&self.url, &path).await else {
                return false;
            };
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            clusters.iter().all(|c| {
                result
                    .iter()
                    .any(|s| s["metric"]["cluster"].as_str() == Some(c.as_str()))
            })
        })
        .await;
    }
}

/// Percent-encodes a query parameter.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
