//! A cluster that lacks one of the APIs the fleet writes, against `psql-fleet sim` serving
//! a cluster without that CRD: reported by name as a misconfiguration (never as
//! unreachable), with what is applied meanwhile, and converged once the CRD is installed.

use std::time::Duration;

use kube_sim::crds::{RELEASE_CRD, USAGE_CRD};
use kube_sim::SimConfig;
use test_support::{eventually, AgentOptions, SimFleet};

/// One cluster, served without `crd`, with the claim `app`.
async fn fleet_without(crd: &str) -> SimFleet {
    fleet(1, &[crd]).await
}

/// `clusters` clusters, served without `without_crds`, each with the claim `app`.
async fn fleet(clusters: usize, without_crds: &[&str]) -> SimFleet {
    let f = SimFleet::start_with(SimConfig {
        clusters,
        ready_after: Duration::from_millis(200),
        without_crds: without_crds.iter().map(|c| c.to_string()).collect(),
        ..SimConfig::default()
    })
    .await;
    f.claim_everywhere();
    f
}

/// The missing API is asked for again every `--interval` (1 s here), not at the resync (an
/// hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_usages_the_releases_are_applied_alone_and_the_gap_is_said_until_installed() {
    let f = fleet_without(USAGE_CRD).await;
    let names = f.names();
    let cluster = &names[0];
    let agent = f
        .start_agent(AgentOptions {
            resync: Some(std::time::Duration::from_secs(3600)),
            ..AgentOptions::default()
        })
        .await;

    let status = eventually("the releases applied and the gap reported", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(cluster)?;
        (f.live_objects(cluster).len() == 2 && !c.missing_apis.is_empty()).then_some(c.clone())
    })
    .await;
    assert!(status.reachable, "a missing API is no outage: {status:?}");
    assert_eq!(
        status.missing_apis,
        vec!["usages.protection.crossplane.io/v1beta1"]
    );
    let table = agent.report().await.to_table();
    assert!(
        table.contains("missing API usages.protection.crossplane.io/v1beta1"),
        "{table}"
    );
    agent.assert_error_counted(cluster, "missing_api").await;

    f.install_crd(cluster, USAGE_CRD).await;
    eventually("the usage applied once the API is there", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(cluster)?;
        (f.live_objects(cluster).len() == 3 && c.missing_apis.is_empty()).then_some(())
    })
    .await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_releases_nothing_is_applied_and_the_cluster_is_not_called_unreachable() {
    let f = fleet_without(RELEASE_CRD).await;
    let names = f.names();
    let cluster = &names[0];
    let agent = f.start_agent(AgentOptions::default()).await;

    let status = eventually("the missing API reported", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(cluster)?;
        (!c.missing_apis.is_empty()).then_some(c.clone())
    })
    .await;
    assert!(status.reachable, "{status:?}");
    assert!(
        status
            .missing_apis
            .contains(&"releases.helm.m.crossplane.io/v1beta1".to_string()),
        "{status:?}"
    );
    assert!(f.live_objects(cluster).is_empty());

    f.install_crd(cluster, RELEASE_CRD).await;
    agent.wait_converged(&names, 1).await;
    assert_eq!(f.live_objects(cluster).len(), 3);
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

/// A cluster that serves both APIs is not asked discovery: the watches' lists say as much
/// (two requests fewer a cluster). A cluster without one is asked once its list answers 404
/// (the tests above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_serves_both_apis_is_not_asked_discovery() {
    let f = fleet(2, &[]).await;
    let names = f.names();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let requests = f.sim.sim.requests.snapshot();
    assert_eq!(requests["discovery"], 0, "{requests:?}");
    // Each cluster: its identity, then a list and a watch of each kind.
    assert_eq!(requests["get"], 2, "{requests:?}");
    assert_eq!(requests["list"], 4, "{requests:?}");
    agent.stop().await;
    f.shutdown().await;
}
