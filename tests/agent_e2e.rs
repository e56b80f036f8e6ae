//! End to end: the agent (`agent::run`, in-process) against the simulator, each test
//! asserting the end state and the simulator's audit log of mutating requests.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::{describe, object_writes, AgentOptions, E2e, RELEASES, USAGES};
use serde_json::Value;

fn ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_is_created_only_after_both_releases_are_ready() {
    let ready_after = Duration::from_millis(800);
    let mut e2e = E2e::start(1, ready_after).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("gate", &name, &[]).await;
    // Every change the cluster commits, in order, from before the agent starts.
    let sim = e2e.sim.sim.clone();
    let mut changes = sim.state(sim.slot(&name).unwrap()).store().subscribe();
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&name, 1)]).await;

    let mut releases: BTreeMap<String, bool> = BTreeMap::new();
    let mut usage_added = false;
    while let Ok(change) = changes.try_recv() {
        let kind = sim.shared.registry[change.key.res].kind.as_str();
        match kind {
            "Release" => {
                releases.insert(change.key.name.clone(), ready(&change.object));
            }
            "Usage" if !usage_added => {
                usage_added = true;
                assert_eq!(
                    releases.len(),
                    2,
                    "the Usage came before both Releases existed"
                );
                assert!(
                    releases.values().all(|r| *r),
                    "the Usage came while a Release was not Ready: {releases:?}"
                );
            }
            _ => {}
        }
    }
    assert!(usage_added, "the Usage was never created");

    let audit = e2e.audit(&name);
    let writes = describe(&object_writes(&audit));
    assert_eq!(
        writes.len(),
        3,
        "two Release applies, then one Usage apply: {writes:?}"
    );
    assert!(writes[..2]
        .iter()
        .all(|w| w.starts_with(&format!("apply {RELEASES} gate/"))));
    assert_eq!(
        writes[2],
        format!("apply {USAGES} gate/gate-delete-atlas-operator-before-stackgres-operator")
    );
    assert!(audit.iter().all(|e| e.code < 300), "{audit:?}");
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let mut e2e = E2e::start(2, Duration::from_millis(300)).await;
    let names = e2e.names.clone();
    for n in &names {
        e2e.add_claim("one", n, &[]).await;
        e2e.add_claim("two", n, &[]).await;
    }
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&names[0], 2), (&names[1], 2)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<usize> = names.iter().map(|n| e2e.audit(n).len()).collect();
    // The agent resyncs every second: five passes per cluster with nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (n, count) in names.iter().zip(before) {
        let audit = e2e.audit(n);
        assert_eq!(
            audit.len(),
            count,
            "{n}: writes in steady state: {:?}",
            &audit[count..]
        );
        assert_eq!(object_writes(&audit).len(), 6, "{n}: {audit:?}");
    }
    let passes = e2e
        .metric(&format!(
            "psql_fleet_reconcile_duration_seconds_count{{cluster=\"{}\"}}",
            names[0]
        ))
        .await
        .unwrap();
    assert!(passes >= 5.0, "resyncs did not run: {passes} passes");
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_computes_and_reports_and_writes_nothing() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("dry", &name, &[]).await;
    let before = e2e.audit(&name).len();
    e2e.start_agent(AgentOptions {
        dry_run: true,
        ..AgentOptions::default()
    })
    .await;
    let report = e2e
        .wait_for("a dry-run pass", |r| {
            r.clusters
                .get(&name)
                .is_some_and(|c| c.reconciled && c.claims.len() == 1)
        })
        .await;
    assert!(report.dry_run);
    let claim = &report.clusters[&name].claims[0];
    assert_eq!(claim.claim, "dry/dry");
    assert!(!claim.ready);
    assert!(
        claim
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("does not exist"),
        "{claim:?}"
    );
    assert_eq!(
        e2e.metric(&format!(
            "psql_fleet_claim_ready{{claim=\"dry/dry\",cluster=\"{name}\"}}"
        ))
        .await,
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audit = e2e.audit(&name);
    assert_eq!(audit.len(), before, "dry run wrote: {:?}", &audit[before..]);
    e2e.shutdown().await;
}
