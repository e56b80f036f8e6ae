//! The receiver: an axum router answering deliveries on [`PATH`] (and `/`), checked in
//! this order: path, method, size, signature, then the event. Served by
//! [`crate::http_server`] with the bounds below.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder};

use super::{verify, Secret, Trigger};
use crate::http_server::{serve_router, Connections};

/// Largest delivery accepted. GitHub's push payloads for a fleet repository are far
/// smaller; GitHub itself caps payloads at 25 MB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time allowed for the headers, and for the whole body: GitHub sends a delivery at once
/// and gives up on it after 10 s itself.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue. GitHub sends one delivery
/// per connection, a few at a time at most; 64 absorbs a burst of pushes while bounding
/// what a flood of bad requests can hold.
pub const MAX_CONNECTIONS: usize = 64;
/// Where deliveries are posted (`/` is accepted too, for a hook URL without a path).
pub const PATH: &str = "/webhook";

/// Why a delivery is refused; the answer is the message, in plain text.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("POST only")]
    PostOnly,
    /// Declared too large (no source), or larger than [`MAX_BODY`] or unreadable once read.
    #[error("payload too large")]
    TooLarge(#[source] Option<BytesRejection>),
    #[error("body not received in time")]
    TimedOut,
    #[error("bad signature")]
    BadSignature,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let code = match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::PostOnly => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Refusal::BadSignature => StatusCode::UNAUTHORIZED,
        };
        reply(code, format!("{self}\n"))
    }
}

/// An answer with a bare text body and no content type, as GitHub shows it in the hook's
/// delivery log.
fn reply(code: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = code;
    response
}

/// What a verified delivery asks for.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Ping,
    Push,
    Ignored,
}

struct Hook {
    secret: Secret,
    trigger: Trigger,
}

/// Serves deliveries on `listener` until the future is dropped, which closes the listener.
pub async fn serve(listener: TcpListener, secret: Secret, trigger: Trigger) {
    let limits = Connections {
        max: MAX_CONNECTIONS,
        header_read_timeout: READ_TIMEOUT,
        max_head: None,
        // One delivery per connection (GitHub opens one each): an idle kept-alive
        // connection would hold a slot.
        keep_alive: false,
        // A connection is also bounded in time as a whole, the answer's writing included.
        lifetime: Some(READ_TIMEOUT * 6),
    };
    serve_router(listener, router(secret, trigger), limits).await;
}

fn router(secret: Secret, trigger: Trigger) -> Router {
    Router::new()
        .route(PATH, post(deliver))
        .route("/", post(deliver))
        .method_not_allowed_fallback(|| async { Refusal::PostOnly })
        .fallback(|| async { Refusal::NotFound })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    Refusal::TimedOut
                }))
                .timeout(READ_TIMEOUT),
        )
        .with_state(Arc::new(Hook { secret, trigger }))
}

/// A header shown in the log as a name: a delivery id (a UUID) or an event name. It comes
/// before the signature is checked, from anyone, so anything else shows as `(malformed)`.
fn token_header(headers: &HeaderMap, name: &str) -> String {
    let Some(value) = headers.get(name) else {
        return String::new();
    };
    let bytes = value.as_bytes();
    let token = bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    match value.to_str() {
        Ok(v) if token => v.to_string(),
        _ => "(malformed)".into(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One delivery: its size, its signature, then its event.
async fn deliver(State(hook): State<Arc<Hook>>, req: Request) -> Result<Response, Refusal> {
    let headers = req.headers();
    let declared = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Refusal::TooLarge(None));
    }
    let signature = header(headers, "x-hub-signature-256");
    let event = header(headers, "x-github-event");
    let delivery_id = token_header(headers, "x-github-delivery");
    let shown_event = token_header(headers, "x-github-event");
    // Bounded by the router's `DefaultBodyLimit`, and in time by its timeout.
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|e| Refusal::TooLarge(Some(e)))?;
    if !verify(&hook.secret, &body, signature.as_deref()) {
        tracing::warn!(delivery = %delivery_id, "webhook delivery refused: missing or bad signature");
        return Err(Refusal::BadSignature);
    }
    let delivery = match event.as_deref() {
        Some("ping") => Delivery::Ping,
        Some("push") => Delivery::Push,
        _ => Delivery::Ignored,
    };
    tracing::info!(delivery = %delivery_id, event = %shown_event, "webhook delivery");
    Ok(match delivery {
        Delivery::Ping => reply(StatusCode::OK, "pong\n"),
        Delivery::Push => {
            hook.trigger.fire();
            reply(StatusCode::ACCEPTED, "fetching\n")
        }
        Delivery::Ignored => reply(StatusCode::NO_CONTENT, Body::empty()),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn headers_logged_before_the_signature_is_checked_are_ids_or_shown_as_malformed() {
        let with = |value: &'static [u8]| {
            let mut headers = HeaderMap::new();
            headers.insert("x-github-delivery", HeaderValue::from_bytes(value).unwrap());
            token_header(&headers, "x-github-delivery")
        };
        assert_eq!(
            with(b"72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        assert_eq!(with(b"id\tINFO forged"), "(malformed)");
        assert_eq!(with(b"\xc3\xa9t\xc3\xa9"), "(malformed)");
        assert_eq!(with("x".repeat(65).leak().as_bytes()), "(malformed)");
        assert_eq!(token_header(&HeaderMap::new(), "x-github-delivery"), "");
    }
}
