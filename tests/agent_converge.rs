//! End to end: the agent against `psql-fleet sim`, all claims ready on 5 simulated clusters.

use std::time::Duration;

use test_support::audit::object_writes;
use test_support::{AgentOptions, SimFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_becomes_ready_on_five_simulated_clusters() {
    let f = SimFleet::start(5, Duration::from_millis(300)).await;
    f.claim_everywhere();
    let agent = f.start_agent(AgentOptions::default()).await;
    let expected: Vec<(&str, usize)> = f.names.iter().map(|n| (n.as_str(), 1)).collect();
    let report = agent.wait_ready(&expected).await;
    assert_eq!(report.clusters.len(), 5);
    assert!(report.source.revision.is_some());
    for name in &f.names {
        // Two Releases, then the Usage; nothing deleted, nothing applied twice.
        let writes = object_writes(&f.audit(name)).len();
        assert_eq!(writes, 3, "{name}: {:?}", f.audit(name));
    }
    agent.stop().await;
    f.shutdown().await;
}
