//! The signature check, the endpoint on loopback, and the agent end to end: a signed push
//! makes it fetch a `git daemon` and apply to the simulator at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

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

#[test]
fn githubs_documented_example_signature_verifies() {
    // From GitHub's "Validating webhook deliveries".
    let secret = Secret::new(b"It's a Secret to Everybody");
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(secret.sign(b"Hello, World!"), good);
    assert!(verify(&secret, b"Hello, World!", Some(good)));
    assert!(!verify(&secret, b"Hello, World?", Some(good)));
    assert!(!verify(&secret, b"Hello, World!", None));
    assert!(!verify(
        &secret,
        b"Hello, World!",
        Some(&good.replace("sha256=", "sha1="))
    ));
    assert!(!verify(&secret, b"Hello, World!", Some(&good[..70])));
    assert!(!verify(
        &secret,
        b"Hello, World!",
        Some(&good.replace('7', "z"))
    ));
    assert!(!verify(
        &Secret::new(b"other"),
        b"Hello, World!",
        Some(good)
    ));
}

#[test]
fn the_secret_never_shows_and_is_read_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "s3cr3t\n").unwrap();
    let secret = Secret::from_file(&path).unwrap();
    assert_eq!(secret.sign(b"x"), Secret::new(b"s3cr3t").sign(b"x"));
    assert!(!format!("{secret:?}").contains("s3cr3t"));
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(
        Secret::from_file(&path),
        Err(Error::EmptySecret(_))
    ));
}

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

mod end_to_end {
    use std::path::Path;

    use super::*;
    use crate::agent::{self, Config, WebhookConfig};
    use crate::source::git::tests::{git, Daemon};
    use crate::source::git::{Credentials, GitRef};
    use crate::source::SourceSpec;
    use crate::status::StatusReport;
    use kube_sim::{self as sim, SimConfig};

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
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

    async fn status(server: &str) -> Option<StatusReport> {
        crate::cli::status::report(server).await
    }

    /// Waits until the one cluster has applied `revision`; the time it took.
    async fn applied(server: &str, revision: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(report) = status(server).await {
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
        let out = tempfile::tempdir().unwrap();
        let handle = sim::start(SimConfig {
            clusters: 1,
            out: out.path().to_path_buf(),
            ready_after: Duration::from_millis(100),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let cluster = handle.cluster_names[0].clone();
        let base = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        git(
            base.path(),
            &["init", "-q", "--bare", "-b", "main", "fleet.git"],
        );
        let bare = base.path().join("fleet.git");
        git(work.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(work.path().join("clusters")).unwrap();
        std::fs::create_dir_all(work.path().join("claims")).unwrap();
        std::fs::copy(
            out.path().join(format!("clusters/{cluster}.yaml")),
            work.path().join(format!("clusters/{cluster}.yaml")),
        )
        .unwrap();
        std::fs::write(work.path().join("claims/a.yaml"), claim(&cluster, "one")).unwrap();
        let first = commit(work.path(), &bare, "first");
        let daemon = Daemon::start(base.path());

        let (port, hook_port) = (free_port(), free_port());
        let config = Config {
            source: SourceSpec::Git(format!("git://127.0.0.1:{}/fleet.git", daemon.port)),
            reference: GitRef::Branch("main".into()),
            credentials: Credentials::default(),
            cache_dir: work.path().join(".cache"),
            credentials_dir: out.path().to_path_buf(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            dry_run: false,
            allow_mass_prune: false,
            // Far longer than the test: only the webhook can bring the second commit in.
            interval: Duration::from_secs(600),
            max_concurrency: 2,
            state_dir: None,
            webhook: Some(WebhookConfig {
                listen: format!("127.0.0.1:{hook_port}").parse().unwrap(),
                secret: Secret::new(b"hook-secret"),
            }),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(agent::run(config, async move {
            let _ = stop_rx.await;
        }));
        let server = format!("http://127.0.0.1:{port}");
        let hook: SocketAddr = format!("127.0.0.1:{hook_port}").parse().unwrap();
        assert!(
            applied(&server, &first, Duration::from_secs(30))
                .await
                .is_some(),
            "the first commit was never applied"
        );

        std::fs::write(work.path().join("claims/a.yaml"), claim(&cluster, "two")).unwrap();
        let second = commit(work.path(), &bare, "second");
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
        let live = crate::cluster::kubeconfig::client(
            &handle.kubeconfig_path(&cluster),
            &fleet_core::fleetdir::load(
                &fleet_core::fleetdir::FileTree::from_dir(work.path()).unwrap(),
            )
            .fleet
            .unwrap()
            .clusters[&cluster],
            false,
        )
        .await
        .unwrap();
        let objects = crate::cluster::list::owned_objects(&live, "default")
            .await
            .unwrap();
        assert!(!objects.is_empty());
        for object in objects.values() {
            assert_eq!(object.label("team"), Some("two"), "{:?}", object.object_ref);
        }

        let _ = stop_tx.send(());
        let _ = agent.await;
        drop(daemon);
        handle.shutdown().await;
    }
}
