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
//! waits on), the pure [`verify`], and [`serve`] (the receiver, in `server`).

mod server;

use std::path::Path;
use std::sync::Arc;

use ring::hmac;
use tokio::sync::Notify;

pub use server::{serve, MAX_BODY, MAX_CONNECTIONS, PATH, READ_TIMEOUT};

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

#[cfg(test)]
mod tests;
