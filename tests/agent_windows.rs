//! End to end against the simulator: a wave outside its rollout window does not start (its
//! clusters are given nothing), and the status says when it next may.

use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave};
use test_support::{AgentOptions, SimFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_outside_its_allow_window_waits_and_says_when_it_next_may_start() {
    let f = SimFleet::start(2, Duration::from_millis(200)).await;
    let (dev, prod) = (f.names[0].clone(), f.names[1].clone());
    // Open one minute a year, at midnight UTC on the 1st of a month six months away: shut
    // whenever this runs.
    let month = (jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .month()
        + 5)
        % 12
        + 1;
    let schedule = format!("0 0 1 {month} *");
    f.put(
        &fleet("main")
            .wave(wave("dev", &[("env", "dev")]).timeout("60s"))
            .wave(
                wave("prod", &[("env", "prod")])
                    .timeout("60s")
                    .window("allow", &schedule, "1m"),
            ),
    );
    f.put(&cluster(&dev).label("env", "dev"));
    f.put(&claim("app", &dev));
    f.put(&cluster(&prod).label("env", "prod"));
    f.put(&claim("app", &prod));
    let agent = f.start_agent(AgentOptions::default()).await;
    let report = agent
        .wait_for("prod waiting for its window", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.waves[1].state == "waiting_for_window")
        })
        .await;
    let rollout = report.rollout.unwrap();
    assert_eq!(rollout.waves[0].state, "complete", "{rollout:?}");
    let prod_wave = &rollout.waves[1];
    let reason = prod_wave.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "waiting for a window: outside allow window allow {schedule} for 1m (UTC);"
        )),
        "{reason}"
    );
    let next = prod_wave.next_window.clone().unwrap_or_default();
    assert!(
        next.ends_with(&format!("-{month:02}-01T00:00:00Z")),
        "{rollout:?}"
    );
    assert!(
        reason.ends_with(&format!("; may start at {next}")),
        "{reason}"
    );
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains(r#"psql_fleet_rollout_wave{state="waiting_for_window",wave="prod"} 1"#),
        "{metrics}"
    );
    assert_eq!(f.live_objects(&dev).len(), 3, "dev rolled out");
    assert!(
        f.live_objects(&prod).is_empty(),
        "prod must wait for its window"
    );
    agent.stop().await;
    f.shutdown().await;
}
