//! End to end: a selector claim (`spec.clusterSelector`) against the simulator. It reaches
//! the clusters whose labels match and no other, and a cluster relabelled out of it has
//! that claim's objects pruned, in the safe order, and nothing else deleted anywhere.

use std::time::Duration;

use fleet_core::testing::{cluster, selector_claim, Claim};
use test_support::audit::{assert_pruned_in_safe_order, deletes};
use test_support::{until, AgentOptions, SimFleet};

/// Claim `db` for every prod cluster, in a namespace of its own so that the safe prune
/// order can be asserted by namespace.
fn db() -> Claim {
    selector_claim("db", &[("env", "prod")])
        .namespace("db")
        .install_namespace("db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_claim_reaches_matching_clusters_and_leaves_one_relabelled_out() {
    let f = SimFleet::start(3, Duration::from_millis(300)).await;
    let (a, b, c) = (f.names[0].clone(), f.names[1].clone(), f.names[2].clone());
    for (name, env) in [(&a, "prod"), (&b, "prod"), (&c, "dev")] {
        f.put(&cluster(name).label("env", env));
        f.namespace(name, "db").await;
    }
    f.put(&db());
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&a, 1), (&b, 1), (&c, 0)]).await;
    assert_eq!(f.live_objects(&a).len(), 3, "{:?}", f.live_objects(&a));
    assert_eq!(f.live_objects(&b).len(), 3, "{:?}", f.live_objects(&b));
    assert!(f.live_objects(&c).is_empty(), "{:?}", f.live_objects(&c));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());

    // b stops matching: its copy of the claim goes, and only that.
    let mark = f.audit(&b).len();
    f.put(&cluster(&b).label("env", "staging"));
    agent
        .wait_for("b to carry no claim", |r| r.clusters[&b].claims.is_empty())
        .await;
    until("b's three deletes", || async {
        deletes(&f.audit(&b)[mark..]).len() == 3
    })
    .await;
    assert_pruned_in_safe_order(&f.audit(&b)[mark..], "db");
    // The simulated provider finalises a deleted Release before it goes.
    until("b's objects to be gone", || async {
        f.live_objects(&b).is_empty()
    })
    .await;
    agent.wait_ready(&[(&a, 1), (&c, 0)]).await;
    let deleted = f.deletions();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    assert!(deleted.iter().all(|e| e.cluster == b), "{deleted:?}");
    assert_eq!(f.live_objects(&a).len(), 3);

    // c is relabelled into it and gets the claim.
    f.put(&cluster(&c).label("env", "prod"));
    agent.wait_ready(&[(&a, 1), (&c, 1)]).await;
    assert_eq!(f.live_objects(&c).len(), 3, "{:?}", f.live_objects(&c));
    assert_eq!(f.deletions().len(), 3, "nothing more deleted");
    agent.stop().await;
    f.shutdown().await;
}
