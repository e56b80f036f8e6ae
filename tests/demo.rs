//! `psql-fleet demo` (what `make demo` runs): a simulated fleet converges, `psql-fleet
//! status` and `/metrics` show it, and SIGINT stops it cleanly and removes its files.

use test_support as common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The demo process, killed if the test fails before it stops it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_converges_shows_status_and_metrics_and_stops_on_ctrl_c() {
    let port = common::free_port();
    let server = format!("http://127.0.0.1:{port}");
    let mut demo = Demo(
        Command::new(common::binary())
            .args([
                "demo",
                "--clusters",
                "6",
                "--ready-after",
                "300ms",
                "--listen",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(common::root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let child = &mut demo.0;
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("demo| {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("all 6 clusters ready"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the demo did not converge:\n{}", seen.join("\n")),
        }
    }
    let text = seen.join("\n");
    assert!(
        text.contains(&format!("psql-fleet status --server {server}")),
        "{text}"
    );
    assert!(text.contains(&format!("{server}/metrics")), "{text}");
    // Progress went up one change at a time and ended with everything ready.
    let progress: Vec<&String> = seen.iter().filter(|l| l.starts_with('[')).collect();
    assert!(progress.len() >= 2, "{text}");
    let last = progress.last().unwrap();
    assert!(last.contains("6/6 clusters ready"), "{last}");
    let fleet_dir = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("fleet:"))
        .and_then(|l| l.split_whitespace().next())
        .map(std::path::PathBuf::from)
        .unwrap();
    assert!(fleet_dir.join("fleet.yaml").is_file());

    let status = Command::new(common::binary())
        .args(["status", "--server", &server])
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8(status.stdout).unwrap();
    let claims = table
        .lines()
        .find_map(|l| l.strip_prefix("6 clusters, "))
        .unwrap_or_else(|| panic!("{table}"));
    let (ready, all) = claims
        .split_once(" claims ready")
        .unwrap()
        .0
        .split_once('/')
        .unwrap();
    assert_eq!(ready, all, "{table}");
    assert!(all.parse::<usize>().unwrap() >= 6, "{table}");

    let summary = Command::new(common::binary())
        .args(["status", "--summary", "--server", &server])
        .output()
        .unwrap();
    assert!(summary.status.success());
    let counts = String::from_utf8(summary.stdout).unwrap();
    assert!(
        counts.contains("6 clusters: 6 reachable, 6 reconciled, 0 failing, 0 leaving\n"),
        "{counts}"
    );
    assert!(
        counts.contains(&format!(
            "{all}/{all} claims ready, {all} with their Usage; 0 drifted"
        )),
        "{counts}"
    );

    let metrics = psql_fleet::cli::status::fetch(&server, "/metrics").unwrap();
    let claim_ready: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("psql_fleet_claim_ready{"))
        .collect();
    assert_eq!(claim_ready.len().to_string(), all, "{metrics}");
    assert!(claim_ready.iter().all(|l| l.ends_with(" 1")), "{metrics}");
    let reachable = metrics
        .lines()
        .filter(|l| l.starts_with("psql_fleet_cluster_reachable{") && l.ends_with(" 1"))
        .count();
    assert_eq!(reachable, 6, "{metrics}");

    // Ctrl-C: the agent and the simulator stop, and the demo's files go.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(code.success(), "{code:?}");
    assert!(
        rest.iter().any(|l| l == "psql-fleet demo: stopped"),
        "{rest:?}"
    );
    assert!(!fleet_dir.exists(), "{} left behind", fleet_dir.display());
    assert!(psql_fleet::cli::status::fetch(&server, "/livez").is_err());
}
