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
//! and the timeouts.

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
    let http2 = Http2::new(connector(config)?, keep_alive, pooled);
    Ok(ClusterClient::new(layered(config, http2)?))
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
}
