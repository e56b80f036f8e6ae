//! End to end: the agent against `psql-fleet sim`, all claims ready on 5 simulated clusters.

mod common;

use std::time::Duration;

use common::harness::{wait_converged, Agent, SimFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_becomes_ready_on_five_simulated_clusters() {
    let f = SimFleet::start(5, Duration::from_millis(300)).await;
    f.claim_everywhere();
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &f.names(), 1, Duration::from_secs(60)).await;
    let report = agent.status().await.unwrap();
    assert_eq!(report.clusters.len(), 5);
    assert!(report.source.revision.is_some());
    agent.stop().await;
    f.sim.shutdown().await;
}
