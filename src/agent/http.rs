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
                    let response = this.route(req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
