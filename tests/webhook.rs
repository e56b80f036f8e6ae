//! GitHub push webhooks end to end: the agent on a Git source (a `git daemon`) and a
//! simulated cluster, polling set far beyond the test, so that only a signed push can make
//! it fetch the next commit; a badly signed one changes nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet_core::testing::{claim, cluster, FleetFiles};
use psql_fleet::agent::WebhookConfig;
use psql_fleet::source::git::GitRef;
use psql_fleet::webhook::{Secret, PATH};
use test_support::files::{git_url, FleetRepo};
use test_support::{AgentOptions, Endpoint, SimFleet};

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

/// The fleet: the simulated cluster, and one claim whose objects carry `team`.
fn files(name: &str, team: &str) -> FleetFiles {
    FleetFiles::new()
        .with(&cluster(name))
        .with(&claim("a", name).label("team", team))
}

/// Waits until the one cluster has applied `revision`; the time it took.
async fn applied(agent: &Endpoint, revision: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(report) = agent.status().await {
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
    let f = SimFleet::start(1, Duration::from_millis(100)).await;
    let name = f.names()[0].clone();
    let repo = FleetRepo::new();
    repo.write(&files(&name, "one"));
    let first = repo.commit("first");
    let daemon = repo.serve();

    let hook: SocketAddr = format!("127.0.0.1:{}", test_support::free_port())
        .parse()
        .unwrap();
    let agent = f
        .start_agent(AgentOptions {
            reference: Some(GitRef::Branch("main".into())),
            max_concurrency: Some(2),
            // Far longer than the test: only the webhook can bring the second commit in.
            interval: Some(Duration::from_secs(600)),
            webhook: Some(WebhookConfig {
                listen: hook,
                secret: Secret::new(b"hook-secret"),
            }),
            ..AgentOptions::git(git_url(&daemon))
        })
        .await;
    assert!(
        applied(&agent, &first, Duration::from_secs(30))
            .await
            .is_some(),
        "the first commit was never applied"
    );

    repo.write(&files(&name, "two"));
    let second = repo.commit("second");
    let client = reqwest::Client::new();
    let bad = Some(Secret::new(b"guess").sign(PUSH.as_bytes()));
    assert_eq!(post(&client, hook, "push", bad, PUSH).await, 401);
    assert!(
        applied(&agent, &second, Duration::from_millis(1500))
            .await
            .is_none(),
        "a badly signed push must not make the agent fetch"
    );

    let good = Some(Secret::new(b"hook-secret").sign(PUSH.as_bytes()));
    let sent = Instant::now();
    assert_eq!(post(&client, hook, "push", good, PUSH).await, 202);
    let took = applied(&agent, &second, Duration::from_secs(30))
        .await
        .map(|_| sent.elapsed());
    let took = took.expect("the signed push was not applied");
    eprintln!("signed push to applied revision: {} ms", took.as_millis());
    let live = f.client(&name).await;
    let objects = psql_fleet::cluster::list::owned_objects(&live, "default")
        .await
        .unwrap();
    assert!(!objects.is_empty());
    for object in objects.values() {
        assert_eq!(object.label("team"), Some("two"), "{:?}", object.object_ref);
    }

    agent.stop().await;
    drop(daemon);
    f.shutdown().await;
}
