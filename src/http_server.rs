//! How the agent's HTTP servers (its endpoints, [`crate::agent::http`], and the webhook
//! receiver, [`crate::webhook`]) hold their connections: an axum router served over
//! HTTP/1.1 with the bounds each server passes in [`Connections`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How one of the agent's HTTP servers holds its connections.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    /// Connections served at once; more wait in the listen backlog.
    pub max: usize,
    /// Time for a request's line and headers, and for an idle kept-alive connection.
    pub header_read_timeout: Duration,
    /// Largest request head (hyper's read buffer), or hyper's default.
    pub max_head: Option<usize>,
    pub keep_alive: bool,
    /// How long a connection may last as a whole, if bounded.
    pub lifetime: Option<Duration>,
}

/// Pause after a failed accept (out of file descriptors, say), rather than spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` over HTTP/1.1 on `listener` until the future is dropped, which closes
/// the listener (connections already accepted finish on their own tasks).
///
/// hyper's connection builder rather than `axum::serve`: the latter sets no header read
/// timeout, head size or keep-alive, so a client trickling its headers would hold a
/// connection for ever.
pub async fn serve_router(listener: TcpListener, router: Router, limits: Connections) {
    let slots = Arc::new(Semaphore::new(limits.max));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(limits.keep_alive);
            if let Some(max) = limits.max_head {
                builder.max_buf_size(max);
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match limits.lifetime {
                Some(lifetime) => {
                    let _ = tokio::time::timeout(lifetime, connection).await;
                }
                None => {
                    let _ = connection.await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// The first line of the answer to `GET /` on `stream`, if one comes within `within`.
    async fn answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(within, stream.read(&mut buf))
            .await
            .ok()?
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        text.lines().next().map(str::to_string)
    }

    #[tokio::test]
    async fn a_connection_beyond_the_bound_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Connections {
            max: 1,
            header_read_timeout: Duration::from_secs(30),
            max_head: None,
            keep_alive: true,
            lifetime: None,
        };
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = tokio::spawn(serve_router(listener, router, limits));
        // The first connection takes the one slot and sends nothing yet.
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            answer(&mut second, Duration::from_millis(100)).await,
            None,
            "a second connection was served beside the first"
        );
        assert_eq!(
            answer(&mut first, Duration::from_secs(10)).await.as_deref(),
            Some("HTTP/1.1 200 OK")
        );
        drop(first);
        let mut rest = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut rest))
            .await
            .expect("the second connection is served once the first closes")
            .unwrap();
        assert!(String::from_utf8_lossy(&rest[..n]).starts_with("HTTP/1.1 200 OK"));
        server.abort();
    }
}
