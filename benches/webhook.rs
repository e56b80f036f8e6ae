//! Push to applied: how long after a signed GitHub `push` delivery the agent has fetched the
//! new commit and applied it to a simulated cluster, with polling set far beyond the run so
//! only the webhook can bring the commit in. Run with `cargo bench --bench webhook` (or
//! `make bench`); prints min, median, p95 and max over the deliveries.

use test_support as common;

use std::path::Path;
use std::time::{Duration, Instant};

use kube_sim::{self as sim, SimConfig};
use psql_fleet::agent::{self, Config, WebhookConfig};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;
use psql_fleet::webhook::{Secret, PATH};

const SECRET: &[u8] = b"bench-secret";
const PUSH: &str = r#"{"ref":"refs/heads/main"}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn commit(work: &Path, bare: &Path, cluster: &str, team: usize) -> String {
    std::fs::write(
        work.join("claims/a.yaml"),
        format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: a}}\nspec: {{clusterName: {cluster}, labels: {{team: t{team}}}}}\n"),
    )
    .expect("claim written");
    common::git::git(work, &["add", "-A"]);
    common::git::git(work, &["commit", "-q", "-m", &format!("team {team}")]);
    common::git::git(work, &["push", "-q", &bare.display().to_string(), "main"]);
    common::git::git(work, &["rev-parse", "HEAD"])
}

async fn applied_revision(server: &str) -> Option<String> {
    let report = psql_fleet::cli::status::report(server).await?;
    report
        .clusters
        .values()
        .next()
        .and_then(|c| c.applied_revision.clone())
}

async fn wait_applied(server: &str, commit: &str) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(r) = applied_revision(server).await {
            if commit.starts_with(&r) || r.starts_with(commit) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{commit} never applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let deliveries = if std::env::args().any(|a| a == "--bench") {
        20
    } else {
        1
    };
    let out = tempfile::tempdir().expect("tempdir");
    let handle = sim::start(SimConfig {
        clusters: 1,
        out: out.path().to_path_buf(),
        ready_after: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let cluster = handle.cluster_names[0].clone();
    let (base, work) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    common::git::git(
        base.path(),
        &["init", "-q", "--bare", "-b", "main", "fleet.git"],
    );
    let bare = base.path().join("fleet.git");
    common::git::git(work.path(), &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(work.path().join("clusters")).expect("dir");
    std::fs::create_dir_all(work.path().join("claims")).expect("dir");
    std::fs::copy(
        out.path().join(format!("clusters/{cluster}.yaml")),
        work.path().join(format!("clusters/{cluster}.yaml")),
    )
    .expect("cluster file");
    let first = commit(work.path(), &bare, &cluster, 0);

    let (port, hook_port) = (free_port(), free_port());
    let config = Config {
        source: SourceSpec::Git(format!("file://{}", bare.display())),
        reference: GitRef::Branch("main".into()),
        credentials: Credentials::default(),
        cache_dir: work.path().join(".cache"),
        credentials_dir: out.path().to_path_buf(),
        listen: format!("127.0.0.1:{port}").parse().expect("addr"),
        dry_run: false,
        allow_mass_prune: false,
        interval: Duration::from_secs(3600),
        resync: Duration::from_secs(3600),
        max_concurrency: 2,
        state_dir: None,
        webhook: Some(WebhookConfig {
            listen: format!("127.0.0.1:{hook_port}").parse().expect("addr"),
            secret: Secret::new(SECRET),
        }),
        wait_for_source: false,
        control: Default::default(),
        verify: None,
        leader_election: None,
        shards: 1,
        gates: Default::default(),
        github_approvals: None,
        cluster_api: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent::run(config, async move {
        let _ = stop_rx.await;
    }));
    let server = format!("http://127.0.0.1:{port}");
    wait_applied(&server, &first).await;

    let client = reqwest::Client::new();
    let signature = Secret::new(SECRET).sign(PUSH.as_bytes());
    let mut samples = Vec::new();
    for i in 1..=deliveries {
        let pushed = commit(work.path(), &bare, &cluster, i);
        let sent = Instant::now();
        let status = client
            .post(format!("http://127.0.0.1:{hook_port}{PATH}"))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", &signature)
            .body(PUSH)
            .send()
            .await
            .expect("delivery sent")
            .status();
        assert_eq!(status.as_u16(), 202);
        wait_applied(&server, &pushed).await;
        samples.push(sent.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p95 = samples[(samples.len() * 95 / 100).min(samples.len() - 1)];
    println!(
        "webhook push -> applied ({} deliveries, 1 cluster): min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(p95),
        ms(samples[samples.len() - 1])
    );
    let _ = stop_tx.send(());
    let _ = agent.await;
    handle.shutdown().await;
}
