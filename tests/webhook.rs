//! GitHub push webhooks: the endpoint on loopback (what it answers, what it refuses, what
//! fires the trigger), and end to end: the agent on a Git source (a `git daemon`) and a
//! simulated cluster, polling set far beyond the test, so that only a signed push can make
//! it fetch the next commit; a badly signed one changes nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet_core::testing::{claim, cluster, FleetFiles};
use psql_fleet::agent::WebhookConfig;
use psql_fleet::source::git::GitRef;
use psql_fleet::webhook::{serve, Secret, Trigger, MAX_BODY, PATH};
use test_support::files::{git_url, FleetRepo};
use test_support::{AgentOptions, Endpoint, SimFleet};
use tokio::net::TcpListener;

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
    let objects = psql_fleet::cluster::list::owned_objects(&live, "default", &name)
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

async fn endpoint(secret: &str) -> (SocketAddr, Trigger, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trigger = Trigger::new();
    let task = tokio::spawn(serve(
        listener,
        Secret::new(secret.as_bytes()),
        trigger.clone(),
    ));
    (addr, trigger, task)
}

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

async fn was_fired(trigger: &Trigger) -> bool {
    tokio::time::timeout(Duration::from_millis(100), trigger.fired())
        .await
        .is_ok()
}

const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123"}"#;

#[tokio::test]
async fn a_signed_push_fires_the_trigger_and_a_ping_is_answered_without_it() {
    let (addr, trigger, task) = endpoint("topsecret").await;
    let client = reqwest::Client::new();
    let sign = |body: &str| Some(Secret::new(b"topsecret").sign(body.as_bytes()));
    assert_eq!(post(&client, addr, "ping", sign("{}"), "{}").await, 200);
    assert!(!was_fired(&trigger).await);
    assert_eq!(post(&client, addr, "push", sign(PUSH), PUSH).await, 202);
    assert!(was_fired(&trigger).await);
    assert_eq!(post(&client, addr, "issues", sign("{}"), "{}").await, 204);
    assert!(!was_fired(&trigger).await);
    task.abort();
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_fire_nothing() {
    let (addr, trigger, task) = endpoint("topsecret").await;
    let client = reqwest::Client::new();
    let wrong_key = Some(Secret::new(b"guess").sign(PUSH.as_bytes()));
    assert_eq!(post(&client, addr, "push", wrong_key, PUSH).await, 401);
    assert_eq!(post(&client, addr, "push", None, PUSH).await, 401);
    let other_body = Some(Secret::new(b"topsecret").sign(b"{}"));
    assert_eq!(post(&client, addr, "push", other_body, PUSH).await, 401);
    assert!(!was_fired(&trigger).await);
    task.abort();
}

#[tokio::test]
async fn oversized_bodies_wrong_methods_and_paths_are_refused() {
    let (addr, trigger, task) = endpoint("topsecret").await;
    let client = reqwest::Client::new();
    let big = vec![b'x'; MAX_BODY + 1];
    let signature = Secret::new(b"topsecret").sign(&big);
    let status = client
        .post(format!("http://{addr}{PATH}"))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(big)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 413);
    let get = client
        .get(format!("http://{addr}{PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let other = client
        .post(format!("http://{addr}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    assert!(!was_fired(&trigger).await);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_badly_signed_requests_leave_the_endpoint_up() {
    let (addr, trigger, task) = endpoint("topsecret").await;
    let client = reqwest::Client::new();
    let mut handles = Vec::new();
    for i in 0..1000 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let signature = Some(format!("sha256={:064x}", i));
            post(&client, addr, "push", signature, PUSH).await
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 401);
    }
    assert!(!was_fired(&trigger).await);
    let good = Some(Secret::new(b"topsecret").sign(PUSH.as_bytes()));
    assert_eq!(post(&client, addr, "push", good, PUSH).await, 202);
    assert!(was_fired(&trigger).await);
    task.abort();
}

#[tokio::test]
async fn every_answer_says_why_in_plain_text() {
    let (addr, _trigger, task) = endpoint("topsecret").await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{PATH}");
    let answer = |response: reqwest::Response| async move {
        let code = response.status().as_u16();
        let content_type = response.headers().get("content-type").cloned();
        assert_eq!(content_type, None, "{code}");
        (code, response.text().await.unwrap())
    };
    let get = client.get(&url).send().await.unwrap();
    assert_eq!(answer(get).await, (405, "POST only\n".into()));
    let other = client
        .post(format!("http://{addr}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(other).await, (404, "not found\n".into()));
    let big = client
        .post(&url)
        .body(vec![b'x'; MAX_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(big).await, (413, "payload too large\n".into()));
    let unsigned = client.post(&url).body(PUSH).send().await.unwrap();
    assert_eq!(answer(unsigned).await, (401, "bad signature\n".into()));
    let signed = |event: &str, body: &'static str| {
        client
            .post(format!("http://{addr}/"))
            .header("x-github-event", event)
            .header(
                "x-hub-signature-256",
                Secret::new(b"topsecret").sign(body.as_bytes()),
            )
            .body(body)
            .send()
    };
    let ping = signed("ping", "{}").await.unwrap();
    assert_eq!(answer(ping).await, (200, "pong\n".into()));
    let push = signed("push", PUSH).await.unwrap();
    assert_eq!(answer(push).await, (202, "fetching\n".into()));
    let other_event = signed("issues", "{}").await.unwrap();
    assert_eq!(answer(other_event).await, (204, String::new()));
    task.abort();
}
