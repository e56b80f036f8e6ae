//! GitHub webhooks for `run --webhook-listen`: a `push` makes the agent fetch its Git
//! source at once instead of at the next poll; a `ping` (sent when the hook is created) is
//! answered.
//!
//! Every delivery must carry `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body
//! under the shared secret>`, compared in constant time; without a valid one the answer is
//! 401 and nothing else happens (the body is not even parsed). Bodies are capped at
//! [`MAX_BODY`] and must arrive within [`READ_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] connections are served at once, so a flood of bad requests cannot
//! exhaust the agent.
//!
//! The public surface: [`Secret`], [`Trigger`] (what a delivery fires and the Git poller
//! waits on), [`serve`] and the pure [`verify`].

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ring::hmac;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Largest delivery accepted. GitHub's push payloads for a fleet repository are far
/// smaller; GitHub itself caps payloads at 25 MB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Time allowed for the headers, and for the whole body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// Where deliveries are posted (`/` is accepted too, for a hook URL without a path).
pub const PATH: &str = "/webhook";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the webhook secret file {}: {source}", path.display())]
    SecretFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook secret file {} is empty", .0.display())]
    EmptySecret(std::path::PathBuf),
}

/// The shared secret of the hook. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    pub fn new(secret: &[u8]) -> Self {
        Secret(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The secret in `path`, without a trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
            path: path.to_path_buf(),
            source,
        })?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(Error::EmptySecret(path.to_path_buf()));
        }
        Ok(Self::new(secret.as_bytes()))
    }

    /// The `X-Hub-Signature-256` value for `body` (what GitHub sends; tests sign with it).
    pub fn sign(&self, body: &[u8]) -> String {
        let tag = hmac::sign(&self.0, body);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }
}

/// Whether `header` is a valid `sha256=<hex>` signature of `body`; the comparison is
/// constant-time.
pub fn verify(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    hmac::verify(&secret.0, body, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A request to fetch the source now. Fired any number of times, it wakes one waiter;
/// fires while nobody waits collapse into one, so a burst of pushes makes one fetch.
#[derive(Clone, Debug, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fire(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`Trigger::fire`] (or at once if one came since the last wait).
    pub async fn fired(&self) {
        self.0.notified().await;
    }
}

/// What a verified delivery asks for.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Ping,
    Push,
    Ignored,
}

fn reply(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = code;
    response
}

/// Handles one request: method and path, size, signature, then the event.
async fn handle(
    req: Request<Incoming>,
    secret: &Secret,
    trigger: &Trigger,
) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH && req.uri().path() != "/" {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let declared = header("content-length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n");
    }
    let signature = header("x-hub-signature-256");
    let event = header("x-github-event");
    let delivery_id = header("x-github-delivery").unwrap_or_default();
    let body = match tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"),
        Err(_) => return reply(StatusCode::REQUEST_TIMEOUT, "body not received in time\n"),
    };
    if !verify(secret, &body, signature.as_deref()) {
        tracing::warn!(delivery = %delivery_id, "webhook delivery refused: missing or bad signature");
        return reply(StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let delivery = match event.as_deref() {
        Some("ping") => Delivery::Ping,
        Some("push") => Delivery::Push,
        _ => Delivery::Ignored,
    };
    tracing::info!(delivery = %delivery_id, event = event.as_deref().unwrap_or(""), "webhook delivery");
    match delivery {
        Delivery::Ping => reply(StatusCode::OK, "pong\n"),
        Delivery::Push => {
            trigger.fire();
            reply(StatusCode::ACCEPTED, "fetching\n")
        }
        Delivery::Ignored => reply(StatusCode::NO_CONTENT, ""),
    }
}

/// Serves deliveries on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, secret: Secret, trigger: Trigger) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Arc::new((secret, trigger));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared.0, &shared.1).await) }
            });
            // One delivery per connection (GitHub opens one each): an idle kept-alive
            // connection would hold a slot.
            let connection = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A connection is also bounded in time as a whole, keep-alive included.
            let _ = tokio::time::timeout(READ_TIMEOUT * 6, connection).await;
        });
    }
}

#[cfg(test)]
mod tests;
