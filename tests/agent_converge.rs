//! End to end: the agent against `psql-fleet sim`, all claims ready on 5 simulated clusters.

use test_support as common;

use std::time::Duration;

use common::e2e::{claim, object_writes, AgentOptions, E2e};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_becomes_ready_on_five_simulated_clusters() {
    let mut e2e = E2e::start(5, Duration::from_millis(300)).await;
    for name in e2e.names.clone() {
        let text = claim("app", &name, &[]).replace("namespace: app", "namespace: default");
        e2e.write(&format!("claims/{name}.yaml"), &text);
    }
    e2e.start_agent(AgentOptions::default()).await;
    let names = e2e.names.clone();
    let expected: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let report = e2e.wait_ready(&expected).await;
    assert_eq!(report.clusters.len(), 5);
    assert!(report.source.revision.is_some());
    for name in &names {
        // Two Releases, then the Usage; nothing deleted, nothing applied twice.
        let writes = object_writes(&e2e.audit(name)).len();
        assert_eq!(writes, 3, "{name}: {:?}", e2e.audit(name));
    }
    e2e.shutdown().await;
}
