//! The agent's HTTP endpoints: `/livez`, `/readyz`, `/metrics` and `/api/v1/status`.

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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

    /// Serves until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = match refused(&req) {
                        Some(response) => response,
                        None => this.route(req.uri().path()),
                    };
                    async move { Ok::<_, Infallible>(response) }
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
