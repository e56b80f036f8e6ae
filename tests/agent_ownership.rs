//! What the agent owns and never fights over, against `psql-fleet sim`: a second entry for
//! one cluster, a second agent with another revision, a fleet renamed, a cluster removed.
//! Each case reads the simulator's audit log: no delete that was not meant, and no apply
//! loop.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, Document};
use kube_sim::audit::AuditEntry;
use test_support::files::copy_dir;
use test_support::status::metric;
use test_support::{assert_quiet_for, eventually, Agent, AgentOptions, SimFleet};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Accepted applies by psql-fleet, per `namespace/name`.
fn applies_per_object(entries: &[AuditEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in entries {
        if e.verb == "apply" && e.code < 300 && e.field_manager.as_deref() == Some("psql-fleet") {
            let at = format!(
                "{}/{}",
                e.namespace.as_deref().unwrap_or_default(),
                e.name.as_deref().unwrap_or_default()
            );
            *counts.entry(at).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_entry_for_one_cluster_is_refused_by_name_and_deletes_nothing() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let before = f.live_objects(&names[0]);

    // A second kubeconfig file for the first cluster, under an entry that sorts first and
    // has no claims: no file check can tell, and without the cluster label it would prune
    // everything the first entry applied.
    let original = f.sim_dir().join(format!("{}.yaml", names[0]));
    std::fs::copy(&original, f.sim_dir().join("copy.yaml")).unwrap();
    f.put(&cluster("aa-copy").kubeconfig("copy.yaml"));

    let report = eventually("the duplicate reported", || async {
        let r = agent.status().await?;
        let error = r.clusters.get(&names[0])?.last_error.clone()?;
        error.contains("same cluster").then_some(error)
    })
    .await;
    assert!(report.contains("aa-copy"), "{report}");
    assert!(report.contains(&names[0]), "{report}");
    agent
        .assert_error_counted(&names[0], "duplicate_cluster")
        .await;
    // The refused entry makes no pass; the keeper makes one each second.
    assert_quiet_for("nothing deleted", Duration::from_secs(5), || async {
        f.deletions().is_empty() && f.live_objects(&names[0]) == before
    })
    .await;

    // Remove the copy: the first entry is reconciled again.
    f.remove("clusters/aa-copy.yaml");
    eventually("the first entry reconciled again", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&names[0])?;
        (c.last_error.is_none() && !r.clusters.contains_key("aa-copy")).then_some(())
    })
    .await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_with_different_pins_do_not_fall_into_an_apply_loop() {
    let f = SimFleet::start(1, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let first = f.start_agent(AgentOptions::default()).await;
    first.wait_converged(&names, 1).await;

    // The same fleet, one pin ahead: a second agent that saw the next commit first.
    let other = tempfile::tempdir().unwrap();
    copy_dir(f.fleet_dir(), &other.path().join("fleet"));
    let ahead = fleet("default").pin("stackgres-operator", "1.18.3");
    std::fs::write(
        other.path().join("fleet").join(ahead.path()),
        ahead.to_yaml(),
    )
    .unwrap();
    let mut config = f.agent_config(&AgentOptions::default());
    config.source = psql_fleet::source::SourceSpec::Dir(other.path().join("fleet"));
    config.cache_dir = other.path().join("cache");
    let fight_from = f.audit(&names[0]).len();
    let second = Agent::start(config, Vec::new()).await;

    let said = eventually("another writer reported", || async {
        for agent in [&first, &second] {
            let r = agent.status().await?;
            if let Some(e) = r.clusters.get(&names[0])?.last_error.clone() {
                if e.contains("another writer") {
                    return Some(e);
                }
            }
        }
        None
    })
    .await;
    assert!(
        said.contains("psql-fleet on "),
        "names the other agent: {said}"
    );
    // Half a minute of disagreement: a burst each, then next to nothing.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let fought = applies_per_object(&f.audit(&names[0])[fight_from..]);
    let worst = fought.values().copied().max().unwrap_or_default();
    assert!(worst <= 12, "an apply loop: {fought:?}");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    second.stop().await;
    first.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_fleet_relabels_its_objects_and_prunes_a_claim_dropped_with_the_rename() {
    let f = SimFleet::start(1, ms(200)).await;
    let names = f.names();
    let gone = claim("gone", &names[0])
        .namespace("gone")
        .install_namespace("gone");
    f.claim_everywhere();
    f.add_claim(&gone).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 2).await;
    let kept = f.live_objects(&names[0]);

    f.remove_doc(&gone);
    f.put(&fleet("payments"));
    eventually("the old claim pruned and the rest relabelled", || async {
        let client = f.client(&names[0]).await;
        let objects = psql_fleet::cluster::list::owned_objects(&client, "payments", &names[0])
            .await
            .ok()?;
        (objects.len() == 3 && f.live_objects(&names[0]).len() == 3).then_some(())
    })
    .await;
    let deleted: Vec<String> = f
        .deletions()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e.namespace.as_deref().unwrap_or_default(),
                e.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        deleted,
        vec![
            "gone/atlas-operator",
            "gone/gone-delete-atlas-operator-before-stackgres-operator",
            "gone/stackgres-operator",
        ]
    );
    let after = f.live_objects(&names[0]);
    assert_eq!(
        after,
        kept.into_iter()
            .filter(|o| !o.starts_with("gone/"))
            .collect::<Vec<_>>()
    );
    let m = agent.metrics().await;
    let corrections = metric(
        &m,
        "psql_fleet_drift_corrections_total",
        &[("cluster", &names[0])],
    );
    assert!(
        corrections.unwrap_or(0.0) == 0.0,
        "a rename is no drift: {corrections:?}"
    );
    let report = agent.report().await;
    assert_eq!(report.clusters[&names[0]].claims.len(), 1);
    agent.stop().await;
    f.shutdown().await;
}

/// Two clusters with the claim `app` each, converged; then the second cluster's file and
/// claim are removed in one change. `fleet_yaml` is written first when given.
async fn converged_then_second_cluster_removed(
    fleet_yaml: Option<&str>,
) -> (SimFleet, Agent, Vec<String>) {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    if let Some(text) = fleet_yaml {
        f.write("fleet.yaml", text);
    }
    let names = f.names();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let leaving = &names[1];
    f.remove_doc(&claim("app", leaving));
    f.remove(&format!("clusters/{leaving}.yaml"));
    (f, agent, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_removed_from_the_fleet_is_emptied_in_the_safe_order_and_leaves_status_and_metrics(
) {
    let (f, agent, names) = converged_then_second_cluster_removed(None).await;
    let leaving = &names[1];
    eventually("the cluster emptied and forgotten", || async {
        let r = agent.status().await?;
        (f.live_objects(leaving).is_empty() && !r.clusters.contains_key(leaving)).then_some(())
    })
    .await;
    let order: Vec<String> = f
        .deletions()
        .iter()
        .map(|e| format!("{} {}", e.cluster, e.name.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        order,
        vec![
            format!("{leaving} atlas-operator"),
            format!("{leaving} app-delete-atlas-operator-before-stackgres-operator"),
            format!("{leaving} stackgres-operator"),
        ]
    );
    let m = agent.metrics().await;
    assert!(
        !m.lines()
            .any(|l| l.contains(&format!("cluster=\"{leaving}\""))),
        "the cluster's series are gone: {m}"
    );
    assert_eq!(f.live_objects(&names[0]).len(), 3);
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_removed_from_a_fleet_that_orphans_keeps_its_objects_and_leaves_the_status() {
    const ORPHANS: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata:\n  name: default\nspec:\n  prune:\n    removedClusters: orphan\n";
    let (f, agent, names) = converged_then_second_cluster_removed(Some(ORPHANS)).await;
    let leaving = &names[1];
    eventually("the cluster released", || async {
        let r = agent.status().await?;
        (!r.clusters.contains_key(leaving)).then_some(())
    })
    .await;
    assert_quiet_for("no deletion", Duration::from_secs(3), || async {
        f.deletions().is_empty()
    })
    .await;
    assert_eq!(f.live_objects(leaving).len(), 3);
    agent.stop().await;
    f.shutdown().await;
}
