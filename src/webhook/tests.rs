//! The signature check and the endpoint on loopback. The agent end to end (a signed push
//! makes it fetch a `git daemon` and apply to the simulator at once) is `tests/webhook.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

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
