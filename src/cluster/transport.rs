//! The HTTP stack under a cluster's kube client. kube's default stack speaks HTTP/1.1 only,
//! so each watch holds a TLS connection of its own: two watches and the applies made three
//! connections per cluster, each with its own read and write buffers, TLS state and
//! dispatch channel, most of the agent's memory at a thousand clusters. This stack offers
//! HTTP/2 by ALPN (as kubectl and client-go do), so both watches and the applies of a
//! cluster share one connection, and falls back to HTTP/1.1 for a server that does not
//! choose h2. A cluster's session drives its connection through h2 itself ([`Http2`]);
//! kube's `Client` for the management cluster goes through hyper-util's pool. Everything
//! else is kube's own: TLS from the kubeconfig (CA, client certificate, the insecure
//! switch), the auth layer (token, token file, exec), headers, the retry of 429/503/504
//! and the timeouts, except that an HTTP/2 connection leaves reads and writes to its
//! health check (`untimed`).

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{ClientBuilder, ConfigExt};
use tower::{BoxError, Service, ServiceBuilder};

use super::client::ClusterClient;
use super::http2::{Http1, Http2, KeepAlive};

/// With HTTP/2 a connection outlives any one request, so a silent peer is found by PING
/// with client-go's health check timings (`ReadIdleTimeout` 30 s, `PingTimeout` 15 s):
/// a PING goes once nothing was read for the interval, so a busy connection sends none and
/// an idle one (its watches hear a bookmark about once a minute) one every 30 s.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// The socket's read timeout: longer than a PING's wait for its answer, so that on an idle
/// connection the health check, not the timeout, decides that the peer is gone.
pub const READ_TIMEOUT: Duration = PING_INTERVAL.saturating_add(PING_TIMEOUT);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// kube is built without its proxy features, so its own stack refuses proxies too.
    #[error("proxy-url is not supported")]
    Proxy,
    #[error("tls-server-name is not a valid server name")]
    ServerName,
}

/// `psql-fleet/<version> (<replica>)`, as client-go names its binary, version and more:
/// an API server's audit log then says which replica of the agent wrote. Characters a
/// header may not hold are left out of the replica's name.
pub fn user_agent(replica: Option<&str>) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match replica {
        Some(r) => {
            let r: String = r
                .chars()
                .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')'))
                .take(128)
                .collect();
            format!("psql-fleet/{version} ({r})")
        }
        None => format!("psql-fleet/{version}"),
    }
}

/// ring's TLS provider, offering AES-128-GCM first as Go's crypto/tls does (client-go,
/// kubectl) where rustls offers AES-256-GCM first. A Go API server picks AES-128-GCM
/// whatever the client's order; a server that follows the client's order, as rustls does,
/// now negotiates what it would with kubectl. The handshake then hashes with SHA-256, which
/// the CPU computes in hardware, not SHA-384 (1.4% of a 10,000-cluster cold start's samples).
pub fn client_provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    // Stable: TLS 1.3 suites stay ahead of TLS 1.2's, the others keep rustls' order.
    provider.cipher_suites.sort_by_key(|s| {
        let aes_128 = matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (
            s.version().version != rustls::ProtocolVersion::TLSv1_3,
            !aes_128,
        )
    });
    provider
}

/// Makes [`client_provider`] the process's, which kube's TLS configuration builds on. A
/// provider installed before (the first TLS configuration built installs rustls' own)
/// stays: this one changes only which cipher suite is offered first.
pub fn install_client_provider() {
    let _ = client_provider().install_default();
}

/// The connector under both clients: TCP, TLS from the kubeconfig offering h2 and
/// HTTP/1.1 by ALPN, and kube's connect, read and write timeouts.
type Connector = hyper_timeout::TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>;

/// A kube client for the cluster `config` describes, for kube's typed `Api` (the leader's
/// Leases and the state store on the management cluster; one-off reads).
pub fn client(config: &kube::Config) -> Result<kube::Client, Error> {
    let service = layered(config, pooled(connector(config)?))?;
    Ok(ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// The client a cluster's session calls through: the same layers over one HTTP/2
/// connection of its own, without kube's request buffer ([`ClusterClient`] says why) or
/// hyper's dispatch channel ([`Http2`] says why).
pub fn cluster_client(config: &kube::Config) -> Result<ClusterClient, Error> {
    let keep_alive = KeepAlive {
        every: PING_INTERVAL,
        wait: PING_TIMEOUT,
    };
    let timed = connector(config)?;
    let http2 = Http2::new(untimed(timed.clone()), timed, keep_alive, pooled);
    Ok(ClusterClient::new(layered(config, http2)?))
}

/// `connector` without its read and write timeouts, for the HTTP/2 connection. Its
/// [`Drive`](super::http2) bounds both with the health check (a PING once nothing was read
/// for a while, the connection closed when no PONG comes, which a stuck write never lets
/// come either), and every call has its own timeout. hyper-timeout's timers cost more than
/// they guard there: after each read and write it sets its timer to now, to disarm it, and
/// a timer moved earlier wakes the runtime's driver, one write to its eventfd and one more
/// turn of the event loop each time (about seven a cluster at a cold start, strace). HTTP/1.1,
/// which has no health check, keeps them. The connect timeout stays.
fn untimed(mut connector: Connector) -> Connector {
    connector.set_read_timeout(None);
    connector.set_write_timeout(None);
    connector
}

fn connector(config: &kube::Config) -> Result<Connector, Error> {
    if config.proxy_url.is_some() {
        return Err(Error::Proxy);
    }
    let mut tls = config.rustls_client_config()?;
    // No TLS session resumption, as client-go has none (its `tls.Config` sets no
    // `ClientSessionCache`): over HTTP/2 a cluster's connection lives for hours, so a
    // resumed handshake is rare, while the tickets kept for one cost about 4 KiB a cluster.
    tls.resumption = rustls::client::Resumption::disabled();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let https = match &config.tls_server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|_| Error::ServerName)?;
            https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => https,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    // HTTP/2 writes a request as several frames; without this, Nagle's algorithm holds the
    // later ones back until the server's delayed ACK (client-go's Go sockets set it too).
    http.set_nodelay(true);
    let https = https.enable_http1().enable_http2().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    Ok(connector)
}

/// hyper-util's pooling client: HTTP/2 where the server chooses it, else HTTP/1.1.
fn pooled(connector: Connector) -> Http1<Connector> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector)
}

/// kube's layers over `inner`: the server's base URI, the retry of 429/503/504, auth
/// (token, token file, exec) and the extra headers.
fn layered<S, B>(
    config: &kube::Config,
    inner: S,
) -> Result<
    impl Service<
            http::Request<kube::client::Body>,
            Response = http::Response<B>,
            Error = BoxError,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
    Error,
>
where
    S: Service<http::Request<kube::client::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: 'static,
{
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(Into::<BoxError>::into)
        .service(inner);
    Ok(service)
}

#[cfg(test)]
mod tests {
    use kube_sim::{self as sim, SimConfig};
    use rustls::CipherSuite;

    #[test]
    fn aes_128_gcm_is_offered_first_in_each_protocol_version() {
        let offered: Vec<CipherSuite> = super::client_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            offered[..3],
            [
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
        assert_eq!(
            offered[3..5],
            [
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
        // Nothing added or dropped.
        assert_eq!(
            offered.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

    /// A server that follows the client's order of cipher suites, as the simulator's
    /// rustls does, negotiates AES-128-GCM, as a Go API server would.
    #[test]
    fn a_server_following_the_clients_order_negotiates_aes_128_gcm() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs = sim::tls::generate().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(super::client_provider().into())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().unwrap();
        let mut client: rustls::Connection = rustls::ClientConnection::new(config.into(), name)
            .unwrap()
            .into();
        let mut server: rustls::Connection =
            rustls::ServerConnection::new(certs.config).unwrap().into();
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            flight(&mut client, &mut server);
            flight(&mut server, &mut client);
        }
        assert!(!client.is_handshaking(), "the handshake did not complete");
        let suite = client.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    /// What `from` has to send, received by `to`.
    fn flight(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut wire = &wire[..];
        while !wire.is_empty() {
            to.read_tls(&mut wire).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    /// The point of this stack: a server that offers h2 by ALPN (as the API server and the
    /// simulator do) is spoken to in HTTP/2, so a cluster's watches and applies share one
    /// connection; kube's default stack would answer HTTP/1.1 here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_offering_h2_is_spoken_to_in_http2() {
        let out = tempfile::tempdir().unwrap();
        let handle = sim::start(SimConfig {
            clusters: 1,
            out: out.path().into(),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let kubeconfig =
            kube::config::Kubeconfig::read_from(handle.kubeconfig_path(&handle.cluster_names[0]))
                .unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = super::cluster_client(&config).unwrap();
        let request = http::Request::get("/version")
            .body(kube::client::Body::empty())
            .unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        handle.shutdown().await;
    }

    /// The HTTP/2 connection's stream waits past kube's read timeout (its health check
    /// bounds it); the HTTP/1.1 client's connector still times out.
    #[tokio::test]
    async fn only_the_http1_connector_times_a_read_out() {
        use hyper_util::rt::TokioIo;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let _ = socket.write_all(b"late").await;
                    std::future::pending::<()>().await;
                });
            }
        });
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        config.read_timeout = Some(std::time::Duration::from_millis(150));
        let timed = super::connector(&config).unwrap();
        let read = |connector: super::Connector| async move {
            let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
            let stream = tower::ServiceExt::oneshot(connector, uri).await.unwrap();
            let mut bytes = [0u8; 4];
            TokioIo::new(stream)
                .read_exact(&mut bytes)
                .await
                .map(|_| bytes)
        };
        let error = read(timed.clone()).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(&read(super::untimed(timed)).await.unwrap(), b"late");
    }
}
