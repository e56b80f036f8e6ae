//! A local HTTP server that plays the GitHub REST API for the agent's commit statuses and
//! wave approvals: it answers a GET of a path a test set with [`FakeGitHub::answer`] with
//! that JSON, every other request `201 {"id": 1}`, and records what it was asked, so a test
//! reads back the statuses the agent set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::Value;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub body: Value,
}

/// The server; stops when dropped.
pub struct FakeGitHub {
    /// Its API base URL (`http://127.0.0.1:<port>/api/v3`), as `--github-api-url` takes it.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    answers: Arc<Mutex<HashMap<String, Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v3", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let log = seen.clone();
        let known = answers.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let known = known.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        let known = known.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path_and_query: parts.uri.to_string(),
                                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                            });
                            let answer = (parts.method == hyper::Method::GET)
                                .then(|| known.lock().unwrap().get(parts.uri.path()).cloned())
                                .flatten();
                            match answer {
                                Some(json) => Response::builder()
                                    .status(200)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(json.to_string()))),
                                None => Response::builder()
                                    .status(201)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(br#"{"id": 1}"#))),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeGitHub {
            url,
            seen,
            answers,
            task,
        }
    }

    /// Answers a GET of `path` (after the API root, e.g. `/repos/o/r/pulls/7/reviews`,
    /// any query) with `json` from now on.
    pub fn answer(&self, path: &str, json: Value) {
        let full = format!("/api/v3{path}");
        self.answers.lock().unwrap().insert(full, json);
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// `(commit, context, state, description)` of every commit status set so far.
    pub fn statuses(&self) -> Vec<CommitStatus> {
        self.seen()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path_and_query.contains("/statuses/"))
            .map(|r| {
                let field = |k: &str| r.body[k].as_str().unwrap_or_default().to_string();
                CommitStatus {
                    sha: r.path_and_query.rsplit('/').next().unwrap().to_string(),
                    context: field("context"),
                    state: field("state"),
                    description: field("description"),
                }
            })
            .collect()
    }
}

/// One commit status the agent set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub sha: String,
    pub context: String,
    pub state: String,
    pub description: String,
}
