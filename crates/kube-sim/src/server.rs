//! [`start`] and the listener. `start` restores or generates the certificates, binds,
//! writes the kubeconfigs and Cluster files, restores saved clusters (resuming their
//! controllers), starts persisting and spawns the accept loop; it returns a [`SimHandle`].
//! The listener is one socket for every cluster: TLS (rustls with ring), then HTTP/1.1 or
//! HTTP/2 (hyper-util auto) served by hyper itself, with no framework between it and
//! [`crate::router`], since the wire details are what the simulator is for. A connection's
//! TLS server name (SNI) chooses its cluster, which it serves at the root of the URL as a
//! real API server does; a connection without one reaches the admin API. One port for
//! every cluster keeps 10,000 clusters at one socket and one certificate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster::{ClusterState, Shared};
use super::config::SimConfig;
use super::persist::{self, StateError, StateErrorKind, StateFile};
use super::sim::{ClusterSlot, Faults, Sim};
use super::{audit, controllers, kubeconfig, objects, router, tls};

/// Why the simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No certificates to serve with.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A file in the output directory, the audit log or the state file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The system's random number generator failed.
    #[error("cannot generate a token")]
    Token,
    /// The state file exists but cannot be restored; starting empty instead would show
    /// every client its objects deleted.
    #[error("cannot restore the simulator state from {0}")]
    State(#[from] StateError),
}

/// A running simulator; dropping it does not stop it, [`SimHandle::shutdown`] does.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub base_url: String,
    pub dir: PathBuf,
    pub cluster_names: Vec<String>,
    pub admin_token: String,
    pub sim: Arc<Sim>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    persisting: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    pub fn kubeconfig_path(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.yaml"))
    }

    /// The server URL of `cluster`'s kubeconfig: the simulator's address, the same for
    /// every cluster; [`SimHandle::server_name`] chooses the cluster.
    pub fn server_url(&self, _cluster: &str) -> String {
        self.base_url.clone()
    }

    /// The TLS server name (the kubeconfig's `tls-server-name`) that reaches `cluster`.
    pub fn server_name(&self, cluster: &str) -> String {
        kubeconfig::server_name(cluster)
    }

    pub fn admin_url(&self) -> String {
        format!("{}/admin", self.base_url)
    }

    /// Stops serving and, with a state file, writes it a last time.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(p) = self.persisting {
            let _ = p.await;
        }
    }
}

fn write(path: PathBuf, contents: &str) -> Result<(), SimError> {
    kubeconfig::write_atomic(&path, contents).map_err(|source| SimError::Write { path, source })
}

/// Starts the simulator on `config.listen` and writes its files into `config.out`. With
/// `config.state_file`, a saved state is restored first (see [`persist`]): the clusters,
/// their objects and tokens, the certificates, and the address when `config.listen` asks
/// for any port. A state file that cannot be restored fails the start before any file is
/// written.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let saved = match &config.state_file {
        Some(path) => persist::read(path)?,
        None => None,
    };
    let tls = match &saved {
        Some(s) => tls::load(s.tls.clone()).map_err(|e| state_error(&config, e))?,
        None => tls::generate()?,
    };
    let listen = match saved.as_ref().and_then(|s| s.address) {
        Some(addr) if config.listen.port() == 0 => addr,
        _ => config.listen,
    };
    let (listener, addr) = bind(listen).await?;
    let base_url = format!("https://{addr}");
    let dir = config.out.clone();
    let (clusters, index) =
        write_cluster_files(&dir, &base_url, &tls.ca_pem, &config, saved.as_ref())?;
    let admin_token = match &saved {
        Some(s) => s.admin_token.clone(),
        None => objects::token().map_err(|_| SimError::Token)?,
    };
    write(dir.join("admin-token"), &admin_token)?;
    write(dir.join("ca.crt"), &tls.ca_pem)?;
    let audit =
        audit::AuditLog::new(config.audit_log.as_ref()).map_err(|source| SimError::Write {
            path: config.audit_log.clone().unwrap_or_default(),
            source,
        })?;
    let shared = Arc::new(Shared::new(config));
    if let Some(s) = &saved {
        // Every cluster is restored before any controller runs: a state file that fails
        // half way starts nothing.
        for state in restore_clusters(&shared, &clusters, s)? {
            controllers::resume(shared.clone(), state);
        }
    }
    let cluster_names = clusters.iter().map(|c| c.name.clone()).collect();
    let sim = Arc::new(Sim {
        shared,
        clusters,
        index,
        admin_token: admin_token.clone(),
        ca_pem: tls.ca_pem.clone(),
        audit,
        requests: Default::default(),
        base_url: OnceLock::new(),
        files: Mutex::new(()),
    });
    let _ = sim.base_url.set(base_url.clone());
    let (stop, stopped) = watch::channel(false);
    let persisting = match sim.shared.config.state_file.clone() {
        Some(path) => Some(start_persisting(&sim, path, addr, &tls.certs, &stopped)?),
        None => None,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    let task = tokio::spawn(serve(listener, acceptor, sim.clone(), stopped));
    Ok(SimHandle {
        addr,
        base_url,
        dir,
        cluster_names,
        admin_token,
        sim,
        stop,
        task,
        persisting,
    })
}

async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), SimError> {
    let listen_error = |source| SimError::Listen {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    Ok((listener, addr))
}

/// Each cluster's kubeconfig and Cluster file, and its slot (identity, credentials, no
/// state yet).
fn write_cluster_files(
    dir: &Path,
    base_url: &str,
    ca_pem: &str,
    config: &SimConfig,
    saved: Option<&StateFile>,
) -> Result<(Vec<ClusterSlot>, HashMap<String, usize>), SimError> {
    std::fs::create_dir_all(dir.join("clusters")).map_err(|source| SimError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let identities = match saved {
        Some(s) => restored_identities(s),
        None => new_identities(config)?,
    };
    let mut clusters = Vec::with_capacity(identities.len());
    let mut index = HashMap::with_capacity(identities.len());
    for (i, (name, labels, token)) in identities.into_iter().enumerate() {
        let kubeconfig_path = dir.join(format!("{name}.yaml"));
        // A restart leaves the kubeconfigs clients hold as they are (one whose token was
        // rotated without rewriting it stays stale); only missing files are written.
        if saved.is_none() || !kubeconfig_path.exists() {
            write(
                kubeconfig_path,
                &kubeconfig::kubeconfig(&name, base_url, ca_pem, &token),
            )?;
        }
        write(
            dir.join("clusters").join(format!("{name}.yaml")),
            &kubeconfig::cluster_file(&name, &labels),
        )?;
        index.insert(name.clone(), i);
        clusters.push(ClusterSlot {
            name,
            labels,
            token: RwLock::new(token),
            faults: RwLock::new(Faults::default()),
            state: OnceLock::new(),
        });
    }
    Ok((clusters, index))
}

/// The saved clusters' states, set in their slots; a cluster no client ever used has none.
fn restore_clusters(
    shared: &Shared,
    clusters: &[ClusterSlot],
    saved: &StateFile,
) -> Result<Vec<Arc<ClusterState>>, SimError> {
    let mut restored = Vec::new();
    for (slot, saved) in clusters.iter().zip(&saved.clusters) {
        if let Some(store) = &saved.store {
            let state = persist::restore_cluster(shared, &slot.name, store)
                .map_err(|e| state_error(&shared.config, e))?;
            let state = Arc::new(state);
            let _ = slot.state.set(state.clone());
            restored.push(state);
        }
    }
    Ok(restored)
}

/// The state file written at once, so that it and the kubeconfigs just written always
/// agree, then kept up to date by a task until `stopped`.
fn start_persisting(
    sim: &Arc<Sim>,
    path: PathBuf,
    address: SocketAddr,
    certs: &tls::Certs,
    stopped: &watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SimError> {
    let writer = persist::Writer {
        path,
        address,
        certs: certs.clone(),
    };
    writer.write(sim).map_err(|source| SimError::Write {
        path: writer.path.clone(),
        source,
    })?;
    Ok(tokio::spawn(writer.run(sim.clone(), stopped.clone())))
}

/// The accept loop: one task per connection, TLS then HTTP/1.1 or HTTP/2, until `stopped`.
async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    sim: Arc<Sim>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        // Go's net package sets TCP_NODELAY on every connection, so a real API server
        // never holds a small write (an HTTP/2 frame) back for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            acceptor.clone(),
            sim.clone(),
            stopped.clone(),
        ));
    }
}

async fn serve_connection(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    sim: Arc<Sim>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let server_name: Option<Arc<str>> = tls.get_ref().1.server_name().map(Arc::from);
    let service = hyper::service::service_fn(move |req| {
        router::handle(sim.clone(), server_name.clone(), req)
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::select! {
        _ = conn => {}
        _ = stop.changed() => {}
    }
}

/// Names, labels and tokens of a first start.
fn new_identities(config: &SimConfig) -> Result<Vec<Identity>, SimError> {
    (0..config.clusters)
        .map(|i| {
            Ok((
                kubeconfig::cluster_name(&config.name_prefix, i, config.clusters),
                kubeconfig::labels(config.seed, i),
                objects::token().map_err(|_| SimError::Token)?,
            ))
        })
        .collect()
}

fn restored_identities(saved: &StateFile) -> Vec<Identity> {
    saved
        .clusters
        .iter()
        .map(|c| {
            let labels = c
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (c.name.clone(), labels, c.token.clone())
        })
        .collect()
}

type Identity = (String, Vec<(String, String)>, String);

/// An error restoring the state file the configuration names.
fn state_error(config: &SimConfig, kind: impl Into<StateErrorKind>) -> SimError {
    SimError::State(StateError::new(
        config.state_file.as_deref().unwrap_or(Path::new("")),
        kind,
    ))
}
