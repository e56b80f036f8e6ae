//! The client against a local HTTP server that plays GitHub: it records every request and
//! answers from a script, so each test checks method, path, headers and JSON body as the
//! REST documentation specifies, and how 502s and rate limits are retried. The fake is
//! shared with the tests of `plan --github-repo`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Value,
}

pub(crate) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

pub(crate) fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![],
        body,
    }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    seen: Vec<Seen>,
}

pub(crate) struct FakeGitHub {
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitHub {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v3", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            seen: vec![],
        }));
        let shared = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let script = script.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.unwrap().to_bytes();
                            let body = if bytes.is_empty() {
                                Value::Null
                            } else {
                                serde_json::from_slice(&bytes).unwrap()
                            };
                            let mut s = script.lock().unwrap();
                            s.seen.push(Seen {
                                method: parts.method.to_string(),
                                path_and_query: parts.uri.path_and_query().unwrap().to_string(),
                                headers: parts.headers,
                                body,
                            });
                            let r = s.replies.pop_front().unwrap_or_else(|| {
                                reply(500, json!({"message": "no scripted reply"}))
                            });
                            let mut builder = Response::builder().status(r.status);
                            for (k, v) in r.headers {
                                builder = builder.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                builder
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(r.body.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, script, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    fn client(&self) -> Client {
        Client::new(&self.url, "acme/fleet", Token::new("ghs_secret123"))
            .unwrap()
            .with_retry(RetryPolicy {
                attempts: 4,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(50),
            })
    }
}

fn assert_github_headers(seen: &Seen) {
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("accept").as_deref(), Some("application/vnd.github+json"));
    assert_eq!(h("x-github-api-version").as_deref(), Some("2022-11-28"));
    assert_eq!(h("authorization").as_deref(), Some("Bearer ghs_secret123"));
    assert!(h("user-agent").unwrap().starts_with("psql-fleet/"));
}

#[tokio::test]
async fn a_commit_status_is_posted_with_state_context_description_and_url() {
    let gh = FakeGitHub::start(vec![reply(201, json!({"id": 1, "state": "pending"}))]).await;
    let long = "x".repeat(200);
    gh.client()
        .set_commit_status(
            "0123abcd",
            "psql-fleet/dev",
            StatusState::Pending,
            &long,
            Some("https://fleet.example/status"),
        )
        .await
        .unwrap();
    let seen = gh.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].path_and_query,
        "/api/v3/repos/acme/fleet/statuses/0123abcd"
    );
    assert_github_headers(&seen[0]);
    let body = &seen[0].body;
    assert_eq!(body["state"], "pending");
    assert_eq!(body["context"], "psql-fleet/dev");
    assert_eq!(body["target_url"], "https://fleet.example/status");
    let description = body["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), MAX_DESCRIPTION);
    assert!(description.ends_with('…'));
}

#[tokio::test]
async fn a_status_without_target_url_leaves_the_field_out() {
    let gh = FakeGitHub::start(vec![reply(201, json!({"id": 1}))]).await;
    gh.client()
        .set_commit_status(
            "abc",
            "psql-fleet/prod",
            StatusState::Failure,
            "halted",
            None,
        )
        .await
        .unwrap();
    let body = &gh.seen()[0].body;
    assert_eq!(
        body,
        &json!({"state": "failure", "description": "halted", "context": "psql-fleet/prod"})
    );
}

#[tokio::test]
async fn a_status_description_has_its_control_characters_escaped_before_it_is_cut() {
    let gh = FakeGitHub::start(vec![reply(201, json!({"id": 1}))]).await;
    let description = format!("failed: cluster c1: \u{1b}[2J\nforged{}", "x".repeat(200));
    gh.client()
        .set_commit_status(
            "abc",
            "psql-fleet/dev",
            StatusState::Failure,
            &description,
            None,
        )
        .await
        .unwrap();
    let sent = gh.seen()[0].body["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sent.starts_with(r"failed: cluster c1: \u{1b}[2J\nforged"),
        "{sent}"
    );
    assert_eq!(sent.chars().count(), MAX_DESCRIPTION);
    assert!(sent.ends_with('…'), "{sent}");
}

#[tokio::test]
async fn the_first_plan_comment_is_created_with_its_marker() {
    let gh = FakeGitHub::start(vec![
        reply(200, json!([{"id": 7, "body": "LGTM"}])),
        reply(201, json!({"id": 99, "body": "..."})),
    ])
    .await;
    let done = gh
        .client()
        .upsert_comment(12, "<!-- psql-fleet:plan -->", "## Plan")
        .await
        .unwrap();
    assert_eq!(done, Upsert::Created(99));
    let seen = gh.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].path_and_query,
        "/api/v3/repos/acme/fleet/issues/12/comments?per_page=100&page=1"
    );
    assert_github_headers(&seen[0]);
    assert_eq!(seen[1].method, "POST");
    assert_eq!(
        seen[1].path_and_query,
        "/api/v3/repos/acme/fleet/issues/12/comments"
    );
    assert_github_headers(&seen[1]);
    assert_eq!(
        seen[1].body,
        json!({"body": "<!-- psql-fleet:plan -->\n## Plan"})
    );
}

#[tokio::test]
async fn a_later_run_edits_the_marked_comment_found_on_a_later_page() {
    let page1: Vec<Value> = (1..=100)
        .map(|i| json!({"id": i, "body": "other"}))
        .collect();
    let next = Reply {
        status: 200,
        headers: vec![(
            "link",
            r#"<https://x/api/v3/repos/acme/fleet/issues/12/comments?page=2>; rel="next", <https://x/...?page=2>; rel="last""#.into(),
        )],
        body: Value::Array(page1),
    };
    let gh = FakeGitHub::start(vec![
        next,
        reply(
            200,
            json!([{"id": 555, "body": "<!-- psql-fleet:plan -->\nold plan"}]),
        ),
        reply(200, json!({"id": 555})),
    ])
    .await;
    let done = gh
        .client()
        .upsert_comment(
            12,
            "<!-- psql-fleet:plan -->",
            "<!-- psql-fleet:plan -->\nnew plan",
        )
        .await
        .unwrap();
    assert_eq!(done, Upsert::Updated(555));
    let seen = gh.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[1].path_and_query.ends_with("?per_page=100&page=2"));
    assert_eq!(seen[2].method, "PATCH");
    assert_eq!(
        seen[2].path_and_query,
        "/api/v3/repos/acme/fleet/issues/comments/555"
    );
    assert_github_headers(&seen[2]);
    assert_eq!(
        seen[2].body,
        json!({"body": "<!-- psql-fleet:plan -->\nnew plan"})
    );
}

#[tokio::test]
async fn a_502_and_a_rate_limit_are_retried_until_the_request_succeeds() {
    let limited = Reply {
        status: 403,
        headers: vec![
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", "9999999999".into()),
        ],
        body: json!({"message": "API rate limit exceeded"}),
    };
    let secondary = Reply {
        status: 429,
        headers: vec![("retry-after", "1".into())],
        body: json!({"message": "secondary rate limit"}),
    };
    let gh = FakeGitHub::start(vec![
        reply(502, json!({"message": "Bad Gateway"})),
        limited,
        secondary,
        reply(201, json!({"id": 3})),
    ])
    .await;
    gh.client()
        .set_commit_status("abc", "psql-fleet/dev", StatusState::Success, "ok", None)
        .await
        .unwrap();
    let seen = gh.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.body == seen[0].body));
}

#[tokio::test]
async fn a_permission_error_is_not_retried_and_never_shows_the_token() {
    let gh = FakeGitHub::start(vec![reply(
        403,
        json!({"message": "Resource not accessible by integration"}),
    )])
    .await;
    let err = gh
        .client()
        .set_commit_status("abc", "psql-fleet/dev", StatusState::Success, "ok", None)
        .await
        .unwrap_err();
    assert_eq!(gh.seen().len(), 1);
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("Resource not accessible by integration"),
        "{text}"
    );
    assert!(!text.contains("ghs_secret123"), "{text}");
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let gh = FakeGitHub::start((0..10).map(|_| reply(503, json!({}))).collect()).await;
    let err = gh
        .client()
        .set_commit_status("abc", "c", StatusState::Error, "e", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(gh.seen().len(), 4);
}

#[test]
fn the_client_and_token_debug_output_redact_the_token() {
    let client = Client::new(DEFAULT_API_URL, "acme/fleet", Token::new("ghp_topsecret")).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("ghp_topsecret"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn each_wave_has_a_context_of_its_own() {
    assert_eq!(wave_context("dev"), "psql-fleet/dev");
    assert_ne!(wave_context("dev"), wave_context("prod"));
}

#[test]
fn repositories_must_be_owner_slash_name() {
    for bad in ["acme", "acme/", "/fleet", "acme/fleet/x", "acme/fl eet"] {
        assert!(
            matches!(
                Client::new(DEFAULT_API_URL, bad, Token::new("t")),
                Err(Error::Repo(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "ghp_abc\n").unwrap();
    let t = Token::from_env_or_file(Some(&path)).unwrap();
    assert_eq!(t.0, "ghp_abc");
    std::fs::write(&path, "  \n").unwrap();
    assert!(matches!(
        Token::from_env_or_file(Some(&path)),
        Err(Error::NoToken)
    ));
}

#[test]
fn only_rate_limits_and_server_errors_are_retried() {
    let mut h = HeaderMap::new();
    assert_eq!(
        retry_wait(StatusCode::BAD_GATEWAY, &h),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_wait(StatusCode::FORBIDDEN, &h), None);
    assert_eq!(retry_wait(StatusCode::NOT_FOUND, &h), None);
    assert_eq!(retry_wait(StatusCode::UNPROCESSABLE_ENTITY, &h), None);
    h.insert("retry-after", HeaderValue::from_static("7"));
    assert_eq!(
        retry_wait(StatusCode::FORBIDDEN, &h),
        Some(Duration::from_secs(7))
    );
}
