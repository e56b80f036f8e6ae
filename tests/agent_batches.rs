//! End to end against the simulator: batches inside a wave (`maxUnavailable`) and
//! stragglers (`maxUnreachable`). The simulator's audit log says which clusters were in
//! progress at once; the status says which clusters a wave completed without and when
//! they caught up.

use std::collections::BTreeSet;
use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave};
use serde_json::json;
use test_support::audit::{RELEASES, USAGES};
use test_support::{AgentOptions, SimFleet};

/// Clusters the agent had started on (a Release written) and not finished (no Usage yet:
/// it is applied only once both Releases are Ready, and the rollout counts a cluster ready
/// only on a later pass with nothing left to write), at most at once, over the audit log.
fn most_in_progress(f: &SimFleet) -> usize {
    let (mut started, mut done) = (BTreeSet::new(), BTreeSet::new());
    let mut most = 0;
    for e in f.audit_all() {
        if e.field_manager.as_deref() != Some("psql-fleet") || e.code >= 300 {
            continue;
        }
        if e.resource == RELEASES && e.subresource.is_none() {
            started.insert(e.cluster.clone());
        } else if e.resource == USAGES {
            done.insert(e.cluster.clone());
        }
        most = most.max(started.difference(&done).count());
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_of_forty_with_max_unavailable_25_percent_never_has_more_than_ten_in_progress() {
    let f = SimFleet::start(40, Duration::from_millis(300)).await;
    f.put(
        &fleet("main").wave(
            wave("prod", &[("env", "prod")])
                .max_unavailable("25%")
                .spread_by("region")
                .timeout("60s"),
        ),
    );
    for (i, name) in f.names.iter().enumerate() {
        let region = ["eu", "us"][i % 2];
        f.put(&cluster(name).label("env", "prod").label("region", region));
        f.put(&claim("app", name));
    }
    let agent = f
        .start_agent(AgentOptions {
            interval: Some(Duration::from_secs(5)),
            ..AgentOptions::default()
        })
        .await;
    let want: Vec<(&str, usize)> = f.names.iter().map(|n| (n.as_str(), 1)).collect();
    agent.wait_ready(&want).await;
    let rollout = agent
        .wait_for("the wave complete", |s| {
            s.rollout.as_ref().is_some_and(|r| r.phase == "complete")
        })
        .await
        .rollout
        .unwrap();
    let w = &rollout.waves[0];
    assert_eq!(w.batches.len(), 4, "{w:?}");
    let wave = [("wave", w.name.as_str())];
    assert_eq!(
        agent.metric("psql_fleet_rollout_wave_batches", &wave).await,
        Some(4.0)
    );
    assert_eq!(
        agent.metric("psql_fleet_rollout_wave_batch", &wave).await,
        Some(4.0)
    );
    assert!(w.batches.iter().all(|b| b.len() == 10), "{w:?}");
    // Spread by region: every batch holds both.
    let region_of = |c: &str| f.names.iter().position(|n| n == c).unwrap() % 2;
    for b in &w.batches {
        let regions: BTreeSet<usize> = b.iter().map(|c| region_of(c)).collect();
        assert_eq!(regions.len(), 2, "{b:?}");
    }
    let most = most_in_progress(&f);
    eprintln!("at most {most} clusters in progress at once");
    assert!(most <= 10, "{most} clusters in progress at once");
    assert!(most >= 5, "batches of ten should overlap: {most}");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_completes_with_two_of_twenty_down_and_they_catch_up_without_holding_the_next() {
    let f = SimFleet::start(21, Duration::from_millis(200)).await;
    let (prod, late) = (f.names[..20].to_vec(), f.names[20].clone());
    f.put(
        &fleet("main")
            .wave(
                wave("prod", &[("env", "prod")])
                    .max_unreachable("10%")
                    .bake_time("1s")
                    .timeout("60s"),
            )
            .wave(wave("late", &[("env", "late")]).timeout("60s")),
    );
    for name in &prod {
        f.put(&cluster(name).label("env", "prod"));
        f.put(&claim("app", name));
    }
    f.put(&cluster(&late).label("env", "late"));
    f.put(&claim("app", &late));
    let down = [prod[3].clone(), prod[7].clone()];
    for d in &down {
        f.faults(d, json!({"down": true})).await;
    }
    let agent = f
        .start_agent(AgentOptions {
            interval: Some(Duration::from_secs(5)),
            ..AgentOptions::default()
        })
        .await;
    let report = agent
        .wait_for("the rollout complete without the two down", |s| {
            s.rollout.as_ref().is_some_and(|r| r.phase == "complete")
                && s.clusters
                    .get(&late)
                    .is_some_and(|c| c.claims.len() == 1 && c.claims.iter().all(|c| c.ready))
        })
        .await;
    let rollout = report.rollout.unwrap();
    let mut stragglers = rollout.waves[0].stragglers.clone();
    stragglers.sort();
    let mut want = down.to_vec();
    want.sort();
    assert_eq!(stragglers, want, "{rollout:?}");
    let wave = [("wave", rollout.waves[0].name.as_str())];
    assert_eq!(
        agent
            .metric("psql_fleet_rollout_wave_stragglers", &wave)
            .await,
        Some(2.0)
    );
    for d in &down {
        assert!(f.live_objects(d).is_empty(), "{d}");
    }

    // Back: they get the revision, and leave the list once ready and baked.
    for d in &down {
        f.faults(d, json!({})).await;
    }
    let report = agent
        .wait_for("the stragglers caught up", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.waves[0].stragglers.is_empty())
        })
        .await;
    assert_eq!(
        agent
            .metric("psql_fleet_rollout_wave_stragglers", &wave)
            .await,
        Some(0.0)
    );
    for d in &down {
        let c = &report.clusters[d];
        assert!(c.claims.len() == 1 && c.claims[0].ready, "{d}: {c:?}");
        assert_eq!(f.live_objects(d).len(), 3, "{d}");
    }
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}
