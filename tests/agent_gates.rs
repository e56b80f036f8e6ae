//! End to end against the simulator and a real Prometheus: a wave's metric gate
//! (`gates` in fleet.yaml) is asked of Prometheus while the wave bakes, with the wave's
//! clusters in place of `$wave_clusters`. Prometheus scrapes a fixture exporter on
//! loopback whose error counter grows (the gate fails the wave, naming the query, the
//! value and the threshold) or stands still (the wave completes).

use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave};
use test_support::prometheus::{Exporter, Prometheus, ERRORS};
use test_support::{AgentOptions, SimFleet};

const GATE: &str = "sum(rate(stackgres_errors_total{cluster=~\"$wave_clusters\"}[5s]))";

/// A fleet of `n` clusters in one wave `prod` gated by [`GATE`] at most 1, Prometheus
/// scraping an exporter whose counters grow by `step` a scrape, and an agent asking it.
async fn gated_fleet(
    n: usize,
    step: f64,
) -> Option<(SimFleet, Prometheus, test_support::agent::Agent)> {
    let f = SimFleet::start(n, Duration::from_millis(200)).await;
    let exporter = Exporter::start(&f.names, step);
    let Some(prometheus) = Prometheus::start(&exporter.target).await else {
        f.shutdown().await;
        return None;
    };
    // Data first: the gate is then judged on the counter, not on Prometheus starting up.
    prometheus
        .wait_for_samples(&format!("rate({ERRORS}[5s])"), &f.names)
        .await;
    f.put(
        &fleet("main").wave(
            wave("prod", &[("env", "prod")])
                .bake_time("2s")
                .timeout("30s")
                .gate_max("errors", GATE, 1.0),
        ),
    );
    for name in &f.names {
        f.put(&cluster(name).label("env", "prod"));
        f.put(&claim("app", name));
    }
    let agent = f
        .start_agent(AgentOptions {
            prometheus_url: Some(prometheus.url.clone()),
            ..AgentOptions::default()
        })
        .await;
    Some((f, prometheus, agent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_over_its_threshold_fails_the_wave_with_query_value_and_threshold() {
    let Some((f, _prometheus, agent)) = gated_fleet(3, 10.0).await else {
        return;
    };
    let report = agent
        .wait_for("the gated wave failed", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.waves[0].state == "failed")
        })
        .await;
    let rollout = report.rollout.unwrap();
    let reason = rollout.waves[0].reason.clone().unwrap_or_default();
    let mut names = f.names.clone();
    names.sort();
    let query = format!(
        "sum(rate(stackgres_errors_total{{cluster=~\"{}\"}}[5s]))",
        names.join("|")
    );
    assert!(
        reason.starts_with(&format!("gate errors: {query} = ")),
        "{reason}"
    );
    assert!(
        reason.ends_with(", outside the threshold max 1"),
        "{reason}"
    );
    let value: f64 = reason
        .trim_start_matches(&format!("gate errors: {query} = "))
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{reason}: {e}"));
    assert!(value > 1.0, "{reason}");
    assert_eq!(rollout.phase, "halted", "{rollout:?}");
    assert_eq!(
        rollout.halted.as_ref().map(|h| h.reason.as_str()),
        Some(reason.as_str())
    );
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains(r#"psql_fleet_rollout_wave{state="failed",wave="prod"} 1"#),
        "{metrics}"
    );
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_within_its_threshold_lets_the_wave_complete() {
    let Some((f, _prometheus, agent)) = gated_fleet(3, 0.0).await else {
        return;
    };
    let report = agent
        .wait_for("the gated wave complete or failed", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| matches!(r.waves[0].state.as_str(), "complete" | "failed"))
        })
        .await;
    let rollout = report.rollout.unwrap();
    assert_eq!(rollout.waves[0].state, "complete", "{rollout:?}");
    assert_eq!(rollout.phase, "complete", "{rollout:?}");
    agent.stop().await;
    f.shutdown().await;
}
