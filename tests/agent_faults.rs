//! The fault matrix: the agent against `psql-fleet sim` while the simulator injects faults
//! (its admin API, as `psql-fleet sim fault` does). For each fault: the end state is
//! right, nothing is deleted that should not be (the simulator's audit log), and status
//! and metrics say what happened while it happened.

mod common;

use std::time::Duration;

use common::harness::{
    eventually, live_objects, metric, status, wait_converged, Agent, ChildAgent, SimFleet,
};
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_is_reported_then_converges_once_up() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (down, others) = (names[0].clone(), names[1..].to_vec());
    f.faults(&down, json!({"down": true})).await;
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &others, 1, CONVERGE).await;
    let report = eventually("the down cluster reported", CONVERGE, || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&down)?;
        (!c.reachable && c.last_error.is_some()).then_some(r)
    })
    .await;
    let error = report.clusters[&down].last_error.clone().unwrap();
    assert!(error.contains(&down), "{error}");
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &down)]),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", &down), ("reason", "unreachable")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(!report.ready, "ready with a cluster never reached");
    assert!(f.audit().iter().all(|e| e.cluster != down));

    f.faults(&down, json!({})).await;
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &down)]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_does_not_validate_keeps_the_last_good_one_and_deletes_nothing() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let good = agent.status().await.unwrap().source.revision.unwrap();
    let before = live_objects(&f.sim, &names[0]);
    assert_eq!(before.len(), 3, "{before:?}");

    // Served, this revision would prune the claim of the first cluster.
    f.remove_claim(&names[0]);
    std::fs::write(
        f.fleet().join("claims/bad.yaml"),
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: bad}\nspec: {clusterName: nowhere}\n",
    )
    .unwrap();
    let report = eventually("the revision rejected", CONVERGE, || async {
        let r = agent.status().await?;
        r.source.rejected.is_some().then_some(r)
    })
    .await;
    assert_eq!(report.source.revision.as_deref(), Some(good.as_str()));
    assert!(
        report
            .source
            .diagnostics
            .iter()
            .any(|d| d.contains("claims/bad.yaml") && d.contains("spec.clusterName")),
        "{:?}",
        report.source.diagnostics
    );
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_source_revision_valid", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "psql_fleet_source_info",
            &[("revision", &good[..good.len().min(12)])]
        )
        .or_else(|| metric(&m, "psql_fleet_source_info", &[("revision", &good)])),
        Some(1.0),
        "{m}"
    );
    // Several resync passes go by on the last good revision.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    assert_eq!(live_objects(&f.sim, &names[0]), before);

    std::fs::remove_file(f.fleet().join("claims/bad.yaml")).unwrap();
    f.add_claim(&names[0]);
    eventually("the fixed revision served", CONVERGE, || async {
        let r = agent.status().await?;
        r.source.rejected.is_none().then_some(())
    })
    .await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_source_revision_valid", &[]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_server_errors_are_counted_and_the_fleet_still_converges() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    for name in &names {
        f.faults(name, json!({"errorRate": 0.3})).await;
    }
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names, 1, Duration::from_secs(90)).await;
    let m = agent.metrics().await.unwrap();
    let errors: f64 = names
        .iter()
        .filter_map(|n| {
            metric(
                &m,
                "psql_fleet_reconcile_errors_total",
                &[("cluster", n), ("reason", "api_error")],
            )
        })
        .sum();
    assert!(errors >= 1.0, "no 5xx counted:\n{m}");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_refused_until_the_kubeconfig_on_disk_changes() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    let (rotated, other) = (names[0].clone(), names[1].clone());
    f.add_claim(&other);
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, std::slice::from_ref(&other), 1, CONVERGE).await;
    wait_converged(&agent.server, std::slice::from_ref(&rotated), 0, CONVERGE).await;

    let answer = f
        .admin(
            "POST",
            &format!("/clusters/{rotated}/rotate-token"),
            json!({"writeKubeconfig": false}),
        )
        .await;
    let token = answer["token"].as_str().unwrap().to_string();
    f.admin(
        "POST",
        &format!("/clusters/{rotated}/expire-watches"),
        json!(null),
    )
    .await;
    // The fleet changes while the agent holds a dead token: nothing can be written.
    f.add_claim(&rotated);
    let report = eventually("the 401 reported", CONVERGE, || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&rotated)?;
        (!c.reachable && c.last_error.as_deref().is_some_and(|e| e.contains("401"))).then_some(r)
    })
    .await;
    assert!(report.clusters[&rotated].claims.iter().all(|c| !c.ready));
    let m = agent.metrics().await.unwrap();
    assert!(
        metric(
            &m,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", &rotated), ("reason", "forbidden")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !f.audit()
            .iter()
            .any(|e| e.cluster == rotated && e.verb == "apply" && e.code < 300),
        "written with a rotated token"
    );

    psql_fleet::sim::kubeconfig::write_atomic(
        &f.sim.kubeconfig_path(&rotated),
        &psql_fleet::sim::kubeconfig::kubeconfig(
            &rotated,
            &f.sim.server_url(&rotated),
            &f.sim.sim.ca_pem,
            &token,
        ),
    )
    .unwrap();
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &rotated)]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_the_atlas_and_stackgres_deletions_completes_the_prune_after_restart(
) {
    let f = SimFleet::start(2, ms(600)).await;
    f.claim_everywhere();
    let names = f.names();
    let (pruned, kept) = (names[0].clone(), names[1].clone());
    let logs = tempfile::tempdir().unwrap();
    let mut first = ChildAgent::start(&f, &logs.path().join("first.log")).await;
    wait_converged(&first.server, &names, 1, CONVERGE).await;

    f.remove_claim(&pruned);
    let is_atlas_delete = |e: &psql_fleet::sim::audit::AuditEntry| {
        e.cluster == pruned
            && e.verb == "delete"
            && e.name.as_deref() == Some("atlas-operator")
            && e.code < 300
    };
    eventually("the Atlas Release deleted", CONVERGE, || async {
        f.audit().iter().any(is_atlas_delete).then_some(())
    })
    .await;
    // Nothing more reaches the cluster from this agent. The Usage may already be asked to
    // go (Crossplane holds it until the Atlas Release is gone), but the StackGres Release
    // waits for the uninstall of the Atlas Release, which takes the simulated ready delay.
    f.faults(&pruned, json!({"down": true})).await;
    first.kill();
    let at_kill = f.deletions();
    assert!(
        at_kill
            .iter()
            .all(|e| e.cluster == pruned && e.name.as_deref() != Some("stackgres-operator")),
        "{at_kill:?}"
    );
    assert!(live_objects(&f.sim, &pruned)
        .iter()
        .any(|o| o.ends_with("/stackgres-operator")));
    f.faults(&pruned, json!({})).await;

    let second = ChildAgent::start(&f, &logs.path().join("second.log")).await;
    eventually("the prune completed", CONVERGE, || async {
        live_objects(&f.sim, &pruned).is_empty().then_some(())
    })
    .await;
    // Every delete request, refused ones included: each step once, in the safe order.
    let deletes: Vec<_> = f
        .audit()
        .into_iter()
        .filter(|e| e.cluster == pruned && e.verb == "delete")
        .collect();
    let order: Vec<&str> = deletes.iter().filter_map(|e| e.name.as_deref()).collect();
    assert_eq!(
        order,
        [
            "atlas-operator",
            "app-delete-atlas-operator-before-stackgres-operator",
            "stackgres-operator"
        ],
        "{deletes:?}"
    );
    assert!(deletes.iter().all(|e| e.code < 300), "{deletes:?}");
    assert!(f.deletions().iter().all(|e| e.cluster == pruned));
    wait_converged(&second.server, std::slice::from_ref(&kept), 1, CONVERGE).await;
    let report = status(&second.server).await.unwrap();
    assert!(report.clusters[&pruned].claims.is_empty());
    drop(second);
    f.sim.shutdown().await;
}
