//! The agent's HTTP endpoints: `/livez`, `/readyz`, `/metrics` and `/api/v1/status`, and
//! the rollout's: `GET /api/v1/rollout`, `POST /api/v1/rollout/halt` (optional JSON body
//! `{"reason": "..."}`) and `POST /api/v1/rollout/resume`. The POSTs take a small JSON
//! body only (`Content-Type: application/json`, so a web page cannot send one without a
//! CORS preflight this server never grants).

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::driver::RolloutDriver;
use crate::metrics::Metrics;
use crate::status::StatusReport;

/// Ready once a revision is served and every cluster has either been reconciled once or
/// been found unreachable.
pub fn is_ready(status: &StatusReport, clusters: usize) -> bool {
    status.source.revision.is_some()
        && status.clusters.len() >= clusters
        && status
            .clusters
            .values()
            .all(|c| c.reconciled || (!c.reachable && c.last_error.is_some()))
}

pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub status: Arc<RwLock<StatusReport>>,
    pub rollouts: Arc<RolloutDriver>,
}

/// Largest body a rollout POST may carry.
pub const MAX_BODY: usize = 4096;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HaltRequest {
    #[serde(default)]
    reason: String,
}

fn json_error(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(
        code,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// How long a client may take to send its request line and headers.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Buffer for a request's head; more is refused (every endpoint is a bare GET).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Every endpoint is read-only and takes no body: anything else is answered at once,
/// without reading what the client sends, and the connection is closed.
fn refused(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    use hyper::body::Body;
    // The rollout controls take a small JSON body by POST and check it themselves.
    if matches!(
        req.uri().path(),
        "/api/v1/rollout/halt" | "/api/v1/rollout/resume"
    ) {
        return None;
    }
    let (code, text) = if !matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) {
        (StatusCode::METHOD_NOT_ALLOWED, "only GET\n")
    } else if req.body().size_hint().lower() > 0 || !req.body().is_end_stream() {
        (StatusCode::PAYLOAD_TOO_LARGE, "requests take no body\n")
    } else {
        return None;
    };
    let mut response = reply(code, "text/plain", text.into());
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    Some(response)
}

impl Endpoints {
    fn route(&self, path: &str) -> Response<Full<Bytes>> {
        let status = self.status.read().map(|s| s.clone()).unwrap_or_default();
        match path {
            "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if status.ready => reply(StatusCode::OK, "text/plain", "ready\n".into()),
            "/readyz" => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".into(),
            ),
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.encode(),
            ),
            "/api/v1/status" => reply(
                StatusCode::OK,
                "application/json",
                serde_json::to_string_pretty(&status).unwrap_or_default(),
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let post = req.method() == hyper::Method::POST;
        match path.as_str() {
            "/api/v1/rollout" => match self.rollouts.status() {
                Some(r) => reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::to_string_pretty(&r).unwrap_or_default(),
                ),
                None => json_error(StatusCode::NOT_FOUND, "no rollout: no revision served yet"),
            },
            "/api/v1/rollout/halt" | "/api/v1/rollout/resume" if !post => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST")
            }
            "/api/v1/rollout/halt" | "/api/v1/rollout/resume" => {
                let json = req
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if !json {
                    return json_error(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Content-Type must be application/json",
                    );
                }
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return json_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body too large or unreadable",
                        )
                    }
                };
                let request: HaltRequest = if body.iter().all(u8::is_ascii_whitespace) {
                    HaltRequest::default()
                } else {
                    match serde_json::from_slice(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            return json_error(StatusCode::BAD_REQUEST, &format!("bad body: {e}"))
                        }
                    }
                };
                let outcome = if path.ends_with("/halt") {
                    self.rollouts.halt(&request.reason)
                } else {
                    self.rollouts.resume()
                };
                match outcome {
                    Ok(r) => reply(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string_pretty(&r).unwrap_or_default(),
                    ),
                    Err(e) => json_error(StatusCode::CONFLICT, &e.to_string()),
                }
            }
            _ => self.route(&path),
        }
    }

    /// Serves until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    async move {
                        let response = match refused(&req) {
                            Some(response) => response,
                            None => this.handle(req).await,
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                // A client that trickles its headers (slowloris) or sends more than a
                // request line and a few headers is cut off instead of holding a task.
                let _ = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
