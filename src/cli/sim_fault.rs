//! `psql-fleet sim fault`: a small HTTPS client of the simulator's admin API, trusting the
//! simulator's CA from `<dir>/ca.crt` and authenticating with `<dir>/admin-token`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::status::chain;

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
            eprintln!("psql-fleet sim fault: {}", chain(&Error::Runtime(e)));
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
            eprintln!("psql-fleet sim fault: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// How long one admin call may take, connecting included: the simulator answers it from
/// memory (faults slow the clusters' API, not this one), so 30 s only ever cuts off a
/// simulator that hangs.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong with an admin call. No variant holds the admin token, and the
/// request's errors are the client's, which never show its headers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad CA certificate {}", path.display())]
    Ca {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method:?} is not an HTTP method")]
    Method {
        method: String,
        #[source]
        source: http::method::InvalidMethod,
    },
    #[error("cannot set up an HTTPS client")]
    Client(#[source] reqwest::Error),
    #[error("bad admin URL {url}")]
    Url {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}

/// One request to the admin API; returns the status code and body text.
pub async fn call(
    args: &FaultArgs,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, String), Error> {
    let read = |name: &str| {
        let path = args.dir.join(name);
        std::fs::read(&path).map_err(|source| Error::Read { path, source })
    };
    let token = String::from_utf8_lossy(&read("admin-token")?)
        .trim()
        .to_string();
    let ca_path = args.dir.join("ca.crt");
    let roots =
        reqwest::Certificate::from_pem_bundle(&read("ca.crt")?).map_err(|source| Error::Ca {
            path: ca_path,
            source,
        })?;
    // The simulator's own CA and nothing else, as its kubeconfigs do; reached directly,
    // whatever proxy the environment names.
    let mut client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .timeout(TIMEOUT);
    for root in roots {
        client = client.add_root_certificate(root);
    }
    let client = client.build().map_err(Error::Client)?;
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|source| Error::Method {
            method: method.to_string(),
            source,
        })?;
    let url = format!("{}{}", args.admin.trim_end_matches('/'), path);
    let payload = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let request = client
        .request(method, &url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload)
        .build()
        .map_err(|source| Error::Url {
            url: url.clone(),
            source: source.without_url(),
        })?;
    let unreachable = |source: reqwest::Error| Error::Unreachable {
        url: url.clone(),
        source: source.without_url(),
    };
    let response = client.execute(request).await.map_err(unreachable)?;
    let code = response.status().as_u16();
    let text = response.text().await.map_err(unreachable)?;
    Ok((code, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, admin: String) -> FaultArgs {
        FaultArgs {
            admin,
            dir: dir.to_path_buf(),
            action: FaultAction::Requests,
        }
    }

    #[tokio::test]
    async fn the_simulators_ca_is_trusted_and_its_token_is_in_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let sim = kube_sim::start(kube_sim::SimConfig {
            clusters: 1,
            out: dir.path().to_path_buf(),
            ..kube_sim::SimConfig::default()
        })
        .await
        .unwrap();
        let admin = sim.admin_url();
        let token = sim.admin_token.clone();
        let (code, text) = call(
            &args(dir.path(), admin.clone()),
            "GET",
            "/requests",
            &Value::Null,
        )
        .await
        .unwrap();
        assert_eq!(code, 200, "{text}");
        // A wrong token is the server's 401, not an error of the client.
        std::fs::write(dir.path().join("admin-token"), "guess\n").unwrap();
        let (code, _) = call(
            &args(dir.path(), admin.clone()),
            "GET",
            "/requests",
            &Value::Null,
        )
        .await
        .unwrap();
        assert_eq!(code, 401);
        std::fs::write(dir.path().join("admin-token"), &token).unwrap();
        sim.shutdown().await;

        let mut errors = Vec::new();
        for admin in [admin.clone(), "not a url".to_string()] {
            errors.push(
                call(
                    &args(dir.path(), admin),
                    "POST",
                    "/x",
                    &json!({"down": true}),
                )
                .await
                .unwrap_err(),
            );
        }
        assert!(
            matches!(errors[0], Error::Unreachable { .. }),
            "{:?}",
            errors[0]
        );
        assert!(matches!(errors[1], Error::Url { .. }), "{:?}", errors[1]);
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let no_ca = call(&args(dir.path(), admin), "GET", "/requests", &Value::Null)
            .await
            .unwrap_err();
        assert!(matches!(no_ca, Error::Read { .. }), "{no_ca:?}");
        errors.push(no_ca);
        for error in &errors {
            let shown = format!("{} {error:?}", chain(error));
            assert!(!shown.contains(&token), "{shown}");
        }
    }
}
