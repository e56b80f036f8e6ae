//! The agent's logs: spans per cluster reconcile carrying the cluster and claim, both
//! `--log-format`s, and never a bearer token, at debug level for every crate (kube, hyper,
//! rustls included), through a convergence and a token rotation.

use test_support as common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use psql_fleet::cli::status::fetch;

const CLUSTERS: usize = 3;

thread_local! {
    /// The agent of this test thread, for failure messages.
    static STATUS_URL: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The bearer tokens of every kubeconfig the simulator wrote, and its admin token.
fn tokens(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![std::fs::read_to_string(dir.join("admin-token")).unwrap()];
    for i in 0..CLUSTERS {
        let text = std::fs::read_to_string(dir.join(format!("sim-00{i}.yaml"))).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let token = config["users"][0]["user"]["token"].as_str().unwrap();
        out.push(token.to_string());
    }
    assert!(out.iter().all(|t| t.len() >= 16), "{out:?}");
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if Instant::now() > deadline {
            let status = STATUS_URL.with(|u| u.borrow().clone());
            panic!(
                "timed out waiting for {what}; status:\n{}",
                fetch(&status, "/api/v1/status").unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn all_ready(server: &str) -> bool {
    let Ok(body) = fetch(server, "/api/v1/status") else {
        return false;
    };
    let report: psql_fleet::status::StatusReport = serde_json::from_str(&body).unwrap();
    report.clusters.len() == CLUSTERS
        && report
            .clusters
            .values()
            .all(|c| !c.claims.is_empty() && c.claims.iter().all(|c| c.ready && c.usage_present))
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped, so a failing test leaves no
/// simulator or agent behind.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            stop(child);
        }
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
}

/// Runs sim and agent, edits and rotates, and returns the agent's whole log and the tokens.
fn run_agent(format: &str) -> (String, Vec<String>) {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Running(Some(
        Command::new(common::binary())
            .args([
                "sim",
                "--clusters",
                &CLUSTERS.to_string(),
                "--ready-after",
                "200ms",
            ])
            .arg("--out")
            .arg(sim_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    wait_until("the simulator", || sim_dir.path().join("ca.crt").is_file());
    let fleet = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fleet.path().join("claims")).unwrap();
    std::fs::create_dir_all(fleet.path().join("clusters")).unwrap();
    for i in 0..CLUSTERS {
        let name = format!("sim-00{i}");
        std::fs::copy(
            sim_dir.path().join(format!("clusters/{name}.yaml")),
            fleet.path().join(format!("clusters/{name}.yaml")),
        )
        .unwrap();
        std::fs::write(
            fleet.path().join(format!("claims/{name}.yaml")),
            format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {name}}}\n"),
        )
        .unwrap();
    }
    let mut tokens = tokens(sim_dir.path());
    let port = common::free_port();
    let server = format!("http://127.0.0.1:{port}");
    STATUS_URL.with(|u| *u.borrow_mut() = server.clone());
    let agent = Running(Some(
        Command::new(common::binary())
            .args([
                "run",
                "--interval",
                "1s",
                "--log-format",
                format,
                "--source",
            ])
            .arg(fleet.path())
            .arg("--credentials-dir")
            .arg(sim_dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(sim_dir.path().join("agent-cache"))
            .env("RUST_LOG", "debug")
            .stdout(std::fs::File::create(fleet.path().join(".log.out")).unwrap())
            .stderr(std::fs::File::create(fleet.path().join(".log.err")).unwrap())
            .spawn()
            .unwrap(),
    ));
    wait_until("every claim ready", || all_ready(&server));

    // The admin API is beside the clusters: https://HOST:PORT/admin.
    let admin = std::fs::read_to_string(sim_dir.path().join("sim-000.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .and_then(|u| u.split("/clusters/").next())
        .map(|base| format!("{base}/admin"))
        .unwrap();
    let fault = |args: &[&str]| {
        let status = Command::new(common::binary())
            .args(["sim", "fault", "--admin", &admin, "--dir"])
            .arg(sim_dir.path())
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "sim fault {args:?}");
    };
    fault(&["rotate-token", "sim-002"]);
    tokens.extend(self::tokens(sim_dir.path()));
    // A few resync intervals with the rotated token in use.
    std::thread::sleep(Duration::from_secs(3));
    wait_until("every claim ready after the rotation", || {
        all_ready(&server)
    });
    assert!(
        all_ready(&server),
        "{}",
        fetch(&server, "/api/v1/status").unwrap_or_default()
    );
    drop(agent);
    drop(sim);
    let log = std::fs::read_to_string(fleet.path().join(".log.out")).unwrap()
        + &std::fs::read_to_string(fleet.path().join(".log.err")).unwrap();
    tokens.sort();
    tokens.dedup();
    (log, tokens)
}

fn assert_no_token(log: &str, tokens: &[String]) {
    assert!(log.lines().count() > 50, "suspiciously short log:\n{log}");
    assert!(log.contains("DEBUG") || log.contains(r#""level":"DEBUG""#));
    for token in tokens {
        let at = log.find(token.as_str());
        assert!(
            at.is_none(),
            "a bearer token appears in the log: ...{}...",
            &log[at.unwrap().saturating_sub(200)..at.unwrap()]
        );
    }
}

#[test]
fn json_logs_carry_reconcile_spans_with_cluster_and_claim_and_no_token() {
    let (log, tokens) = run_agent("json");
    assert_no_token(&log, &tokens);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // An apply is logged inside the reconcile span of its cluster and the action span of
    // its claim.
    let apply = lines
        .iter()
        .find(|l| l["fields"]["message"] == "apply" && l["span"]["name"] == "action")
        .unwrap_or_else(|| panic!("no apply inside an action span:\n{log}"));
    assert_eq!(apply["span"]["claim"], "default/app", "{apply}");
    let spans = apply["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "reconcile", "{apply}");
    assert!(spans[0]["cluster"].as_str().unwrap().starts_with("sim-00"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "claim" && l["fields"]["claim"] == "default/app"));
}

#[test]
fn text_logs_carry_reconcile_spans_and_no_token() {
    let (log, tokens) = run_agent("text");
    assert_no_token(&log, &tokens);
    assert!(
        log.lines()
            .any(|l| l.contains("reconcile{cluster=sim-00")
                && l.contains("action{claim=default/app")),
        "{log}"
    );
}
