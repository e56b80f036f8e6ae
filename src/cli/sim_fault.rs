//! `psql-fleet sim fault`: a small HTTPS client of the simulator's admin API, trusting the
//! simulator's CA from `<dir>/ca.crt` and authenticating with `<dir>/admin-token`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct FaultArgs {
    /// Admin API URL, e.g. https://127.0.0.1:PORT/admin (printed by `psql-fleet sim`).
    #[arg(long)]
    pub admin: String,
    /// The simulator's --out directory (for admin-token and ca.crt).
    #[arg(long, default_value = "sim-out")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub action: FaultAction,
}

#[derive(Subcommand, Debug)]
pub enum FaultAction {
    /// Close every connection to the cluster's prefix.
    Down { cluster: String },
    /// Clear all faults of the cluster.
    Up { cluster: String },
    /// Delay every request by this many milliseconds.
    Latency { cluster: String, ms: u64 },
    /// Answer this fraction (0-1) of requests with 500.
    Errors { cluster: String, rate: f64 },
    /// The next watch from an older resourceVersion gets 410 Gone; open watches close.
    ExpireWatches { cluster: String },
    /// New bearer token; the kubeconfig on disk is rewritten with it.
    RotateToken {
        cluster: String,
        /// Leave the kubeconfig as it is and print the new token: clients get 401 until
        /// the file is rewritten.
        #[arg(long)]
        no_write: bool,
    },
    /// Merge-patch an object as another field manager (default: a Release in `default`).
    Edit {
        cluster: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, default_value = "kubectl-edit")]
        manager: String,
        /// JSON merge patch, e.g. '{"spec":{"forProvider":{"chart":{"version":"1.19.0"}}}}'
        #[arg(long)]
        patch: String,
    },
    /// Print the audit log (optionally of one cluster).
    Audit { cluster: Option<String> },
    /// Print the requests served so far, by verb, reads included.
    Requests,
}

pub fn run(args: &FaultArgs) -> ExitCode {
    let (method, path, body) = match &args.action {
        FaultAction::Down { cluster } => (
            "POST",
            format!("/clusters/{cluster}/faults"),
            json!({"down": true}),
        ),
        FaultAction::Up { cluster } => ("POST", format!("/clusters/{cluster}/faults"), json!({})),
        FaultAction::Latency { cluster, ms } => (
            "POST",
            format!("/clusters/{cluster}/faults"),
            json!({"latencyMs": ms}),
        ),
        FaultAction::Errors { cluster, rate } => (
            "POST",
            format!("/clusters/{cluster}/faults"),
            json!({"errorRate": rate}),
        ),
        FaultAction::ExpireWatches { cluster } => (
            "POST",
            format!("/clusters/{cluster}/expire-watches"),
            Value::Null,
        ),
        FaultAction::RotateToken { cluster, no_write } => (
            "POST",
            format!("/clusters/{cluster}/rotate-token"),
            json!({"writeKubeconfig": !no_write}),
        ),
        FaultAction::Edit {
            cluster,
            name,
            namespace,
            manager,
            patch,
        } => match serde_json::from_str::<Value>(patch) {
            Ok(p) => (
                "POST",
                format!("/clusters/{cluster}/edit"),
                json!({"name": name, "namespace": namespace, "manager": manager, "patch": p}),
            ),
            Err(e) => {
                eprintln!("--patch is not JSON: {e}");
                return ExitCode::FAILURE;
            }
        },
        FaultAction::Requests => ("GET", "/requests".to_string(), Value::Null),
        FaultAction::Audit { cluster } => (
            "GET",
            format!(
                "/audit{}",
                cluster
                    .as_ref()
                    .map(|c| format!("?cluster={c}"))
                    .unwrap_or_default()
            ),
            Value::Null,
        ),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(call(args, method, &path, &body)) {
        Ok((code, text)) => {
            println!("{text}");
            if code < 300 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("psql-fleet sim fault: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request to the admin API; returns the status code and body text.
pub async fn call(
    args: &FaultArgs,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, String), String> {
    let token = std::fs::read_to_string(args.dir.join("admin-token"))
        .map_err(|e| format!("cannot read admin-token: {e}"))?;
    let ca =
        std::fs::read(args.dir.join("ca.crt")).map_err(|e| format!("cannot read ca.crt: {e}"))?;
    let url: http::Uri = format!("{}{}", args.admin.trim_end_matches('/'), path)
        .parse()
        .map_err(|e| format!("bad --admin URL: {e}"))?;
    let host = url.host().ok_or("the --admin URL has no host")?.to_string();
    let port = url.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots
            .add(cert.map_err(|e| format!("bad ca.crt: {e}"))?)
            .map_err(|e| format!("bad ca.crt: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let payload = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let req = http::Request::builder()
        .method(method)
        .uri(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", format!("{host}:{port}"))
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(payload)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, String::from_utf8_lossy(&bytes).into_owned()))
}
