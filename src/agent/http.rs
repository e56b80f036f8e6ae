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

use super::rollout::Rollouts;
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
    pub rollouts: Arc<Rollouts>,
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
                    Err(e) => json_error(StatusCode::CONFLICT, &e),
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
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
