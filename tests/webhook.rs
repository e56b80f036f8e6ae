//! GitHub push webhooks end to end: the agent on a Git source (a `git daemon`) and a
//! simulated cluster, polling set far beyond the test, so that only a signed push can make
//! it fetch the next commit; a badly signed one changes nothing.

use test_support as common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::git::{git, Daemon};
use common::harness::{Agent, SimFleet};
use psql_fleet::agent::WebhookConfig;
use psql_fleet::source::git::GitRef;
use psql_fleet::source::SourceSpec;
use psql_fleet::webhook::{Secret, PATH};

const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123"}"#;

async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    event: &str,
    signature: Option<String>,
    body: &'static str,
) -> u16 {
    let mut request = client
        .post(format!("http://{addr}{PATH}"))
        .header("x-github-event", event)
        .header("x-github-delivery", "d-1")
        .body(body);
    if let Some(s) = signature {
        request = request.header("x-hub-signature-256", s);
    }
    request.send().await.unwrap().status().as_u16()
}

fn claim(cluster: &str, team: &str) -> String {
    format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: a}}\nspec: {{clusterName: {cluster}, labels: {{team: {team}}}}}\n")
}

fn commit(work: &Path, bare: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", &bare.display().to_string(), "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// Waits until the one cluster has applied `revision`; the time it took.
async fn applied(server: &str, revision: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(report) = common::harness::status(server).await {
            let done = report.clusters.values().any(|c| {
                c.applied_revision
                    .as_deref()
                    .is_some_and(|r| revision.starts_with(r) || r.starts_with(revision))
            });
            if done {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_is_fetched_and_applied_at_once_and_a_bad_one_changes_nothing() {
    // The fleet directory (the simulated cluster's Cluster file) is the Git work tree.
    let f = SimFleet::start(1, Duration::from_millis(100)).await;
    let cluster = f.names()[0].clone();
    let work = f.fleet();
    let base = tempfile::tempdir().unwrap();
    git(
        base.path(),
        &["init", "-q", "--bare", "-b", "main", "fleet.git"],
    );
    let bare = base.path().join("fleet.git");
    git(work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("claims/a.yaml"), claim(&cluster, "one")).unwrap();
    let first = commit(work, &bare, "first");
    let daemon = Daemon::start(base.path());

    let hook_port = common::free_port();
    let mut config = common::harness::config(
        SourceSpec::Git(format!("git://127.0.0.1:{}/fleet.git", daemon.port)),
        f.sim_dir.path(),
        f.sim_dir.path().join("git-cache"),
    );
    config.reference = GitRef::Branch("main".into());
    config.max_concurrency = 2;
    // Far longer than the test: only the webhook can bring the second commit in.
    config.interval = Duration::from_secs(600);
    config.webhook = Some(WebhookConfig {
        listen: format!("127.0.0.1:{hook_port}").parse().unwrap(),
        secret: Secret::new(b"hook-secret"),
    });
    let agent = Agent::start(config);
    let server = agent.server.clone();
    let hook: SocketAddr = format!("127.0.0.1:{hook_port}").parse().unwrap();
    assert!(
        applied(&server, &first, Duration::from_secs(30))
            .await
            .is_some(),
        "the first commit was never applied"
    );

    std::fs::write(work.join("claims/a.yaml"), claim(&cluster, "two")).unwrap();
    let second = commit(work, &bare, "second");
    let client = reqwest::Client::new();
    let bad = Some(Secret::new(b"guess").sign(PUSH.as_bytes()));
    assert_eq!(post(&client, hook, "push", bad, PUSH).await, 401);
    assert!(
        applied(&server, &second, Duration::from_millis(1500))
            .await
            .is_none(),
        "a badly signed push must not make the agent fetch"
    );

    let good = Some(Secret::new(b"hook-secret").sign(PUSH.as_bytes()));
    let sent = Instant::now();
    assert_eq!(post(&client, hook, "push", good, PUSH).await, 202);
    let took = applied(&server, &second, Duration::from_secs(30))
        .await
        .map(|_| sent.elapsed());
    let took = took.expect("the signed push was not applied");
    eprintln!("signed push to applied revision: {} ms", took.as_millis());
    let live = psql_fleet::cluster::kubeconfig::client(
        &f.sim.kubeconfig_path(&cluster),
        &common::load_fleet(work).clusters[&cluster],
        false,
    )
    .await
    .unwrap();
    let objects = psql_fleet::cluster::list::owned_objects(&live, "default")
        .await
        .unwrap();
    assert!(!objects.is_empty());
    for object in objects.values() {
        assert_eq!(object.label("team"), Some("two"), "{:?}", object.object_ref);
    }

    agent.stop().await;
    drop(daemon);
    f.sim.shutdown().await;
}
