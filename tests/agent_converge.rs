//! End to end: the agent against `psql-fleet sim`, all claims ready on 5 clusters.

use std::time::{Duration, Instant};

use psql_fleet::agent::{self, Config};
use psql_fleet::sim::{self, SimConfig};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_becomes_ready_on_five_simulated_clusters() {
    let out = tempfile::tempdir().unwrap();
    let handle = sim::start(SimConfig {
        clusters: 5,
        out: out.path().to_path_buf(),
        ready_after: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let fleet = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fleet.path().join("claims")).unwrap();
    std::fs::create_dir_all(fleet.path().join("clusters")).unwrap();
    for name in &handle.cluster_names {
        std::fs::copy(
            out.path().join(format!("clusters/{name}.yaml")),
            fleet.path().join(format!("clusters/{name}.yaml")),
        )
        .unwrap();
        std::fs::write(
            fleet.path().join(format!("claims/{name}.yaml")),
            format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {name}}}\n"),
        )
        .unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        source: SourceSpec::Dir(fleet.path().to_path_buf()),
        reference: GitRef::Head,
        credentials: Credentials::default(),
        cache_dir: fleet.path().join(".cache"),
        credentials_dir: out.path().to_path_buf(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        dry_run: false,
        allow_mass_prune: false,
        interval: Duration::from_secs(5),
        max_concurrency: 4,
        state_dir: None,
        webhook: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent::run(config, async move {
        let _ = stop_rx.await;
    }));
    let server = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let s = server.clone();
        let body = tokio::task::spawn_blocking(move || {
            psql_fleet::cli::status::fetch(&s, "/api/v1/status")
        })
        .await
        .unwrap();
        if let Ok(body) = body {
            let report: psql_fleet::status::StatusReport = serde_json::from_str(&body).unwrap();
            let ready = report.clusters.len() == 5
                && report
                    .clusters
                    .values()
                    .all(|c| c.claims.len() == 1 && c.claims[0].ready && c.claims[0].usage_present);
            if ready {
                break report;
            }
        }
        assert!(Instant::now() < deadline, "fleet did not converge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(report.source.revision.is_some());
    let _ = stop_tx.send(());
    agent.await.unwrap().unwrap();
    handle.shutdown().await;
}
