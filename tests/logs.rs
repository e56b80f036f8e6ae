//! The agent's logs: spans per cluster reconcile carrying the cluster and claim, both
//! `--log-format`s, and never a bearer token, at debug level for every crate (kube, hyper,
//! rustls included), through a convergence and a token rotation.

use std::path::Path;
use std::time::Duration;

use test_support::{ProcessOptions, SimFleet};

const CLUSTERS: usize = 3;

/// The bearer tokens of every kubeconfig the simulator wrote, and its admin token.
fn tokens(dir: &Path) -> Vec<String> {
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

/// Runs the agent binary at debug level in `format` on a simulated fleet, through a
/// convergence and a token rotation; returns its whole log and every token it held.
async fn run_agent(format: &str) -> (String, Vec<String>) {
    let f = SimFleet::start(CLUSTERS, Duration::from_millis(200)).await;
    f.claim_everywhere();
    let mut tokens = tokens(f.sim_dir());
    let agent = f
        .spawn_agent(ProcessOptions {
            log_format: Some(format.into()),
            rust_log: Some("debug".into()),
            ..ProcessOptions::default()
        })
        .await;
    agent.wait_converged(&f.names, 1).await;

    // The kubeconfig on disk changes with the new token, as `sim fault rotate-token` does.
    let rotated = &f.names[2];
    f.rotate_token(rotated).await;
    tokens.extend(self::tokens(f.sim_dir()));
    // A few passes with the rotated token in use.
    agent.wait_passes(rotated, 3).await;
    agent.wait_converged(&f.names, 1).await;
    let exit = agent.stop().await;
    assert!(exit.success(), "the agent ended with {exit}");
    let log = std::fs::read_to_string(f.sim_dir().join("agent.log")).unwrap();
    f.shutdown().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_reconcile_spans_with_cluster_and_claim_and_no_token() {
    let (log, tokens) = run_agent("json").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_carry_reconcile_spans_and_no_token() {
    let (log, tokens) = run_agent("text").await;
    assert_no_token(&log, &tokens);
    assert!(
        log.lines()
            .any(|l| l.contains("reconcile{cluster=sim-00")
                && l.contains("action{claim=default/app")),
        "{log}"
    );
}

/// What a forged log line would start with: a timestamp of its own.
const FORGED: &str = "2026-01-01T00:00:00.000000Z  INFO psql_fleet::agent: serving revision";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_keep_one_event_per_line_whatever_a_file_name_or_a_halt_reason_holds() {
    let f = SimFleet::start(1, Duration::from_millis(200)).await;
    f.claim_everywhere();
    let agent = f.spawn_agent(ProcessOptions::default()).await;
    agent.wait_converged(&f.names, 1).await;

    // A commit can name a file anything: this one clears the screen and starts a line.
    f.write(
        &format!("claims/x\u{1b}[2J\n{FORGED}.yaml"),
        "kind: Psql\nspec: {bogus: 1}\n",
    );
    agent
        .wait_for("the revision rejected", |r| r.source.rejected.is_some())
        .await;
    // A halt reason the same: refused, and not logged as sent.
    let reason = format!("ok\u{1b}[2J\n{FORGED}");
    let body = serde_json::json!({ "reason": reason }).to_string();
    let (code, _, answer) = agent
        .control("POST", "/api/v1/rollout/halt", Some(&body))
        .await;
    assert_eq!(code, 400, "{answer}");
    // A control action is logged with who asked (the token's name) and why, taken or (here,
    // the rollout being complete) refused; the token itself is nowhere.
    let body = serde_json::json!({ "reason": "maintenance window" }).to_string();
    let (code, _, answer) = agent
        .control("POST", "/api/v1/rollout/halt", Some(&body))
        .await;
    assert!(code == 200 || code == 409, "{answer}");
    let exit = agent.stop().await;
    assert!(exit.success(), "the agent ended with {exit}");

    let log = std::fs::read_to_string(f.sim_dir().join("agent.log")).unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&format!(r"claims/x\u{{1b}}[2J\n{FORGED}.yaml"))),
        "the file named, escaped, on one line:\n{log}"
    );
    assert!(log.contains("rollout halt refused"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("rollout control")
            && l.contains(&format!("who={}", test_support::agent::CONTROL_TOKEN_NAME))
            && l.contains("reason=maintenance window")),
        "{log}"
    );
    assert!(!log.contains(test_support::agent::CONTROL_TOKEN), "{log}");
    f.shutdown().await;
}

/// Without `--cache-dir` the agent keeps its cache in the user's cache directory, never in
/// the working directory (often a checkout of the fleet repository), and says where at
/// start, before anything else can fail.
#[test]
fn without_cache_dir_the_cache_is_the_users_cache_directory_and_the_start_up_log_says_so() {
    let scratch = tempfile::tempdir().unwrap();
    let checkout = scratch.path().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    let xdg = scratch.path().join("xdg");
    // A source missing at start: the agent gets as far as its rollout state, then ends.
    let out = test_support::psql_fleet(["run", "--listen", "127.0.0.1:0"])
        .arg("--source")
        .arg(scratch.path().join("no-such-fleet"))
        .arg("--credentials-dir")
        .arg(scratch.path())
        .current_dir(&checkout)
        .env("XDG_CACHE_HOME", &xdg)
        .env("HOME", scratch.path().join("home"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("cache directory"))
        .unwrap_or_else(|| panic!("no cache directory line:\n{stderr}"));
    let cache = xdg.join("psql-fleet");
    assert!(
        line.contains(&format!("cache_dir={}", cache.display()))
            && line.contains(r#"from="$XDG_CACHE_HOME""#),
        "{line}"
    );
    assert!(cache.join("state").is_dir(), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&checkout).unwrap().count(),
        0,
        "the agent wrote into the working directory"
    );
}
