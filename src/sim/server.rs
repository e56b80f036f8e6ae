//! The listener: TLS (rustls with ring), HTTP/1.1 and HTTP/2 (hyper-util auto), one
//! socket for every cluster; plus [`start`], which writes the kubeconfigs and Cluster
//! files and returns a handle to the running simulator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::cluster::Shared;
use super::{audit, kubeconfig, objects, router, tls, ClusterSlot, Faults, Sim, SimConfig};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a token")]
    Token,
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
}

impl SimHandle {
    pub fn kubeconfig_path(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.yaml"))
    }

    pub fn server_url(&self, cluster: &str) -> String {
        format!("{}/clusters/{cluster}", self.base_url)
    }

    pub fn admin_url(&self) -> String {
        format!("{}/admin", self.base_url)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn write(path: PathBuf, contents: &str) -> Result<(), SimError> {
    kubeconfig::write_atomic(&path, contents).map_err(|source| SimError::Write { path, source })
}

/// Starts the simulator on `config.listen` and writes its files into `config.out`.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let tls = tls::generate()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen {
        addr: config.listen,
        source,
    })?;
    let base_url = format!("https://{addr}");
    let dir = config.out.clone();
    std::fs::create_dir_all(dir.join("clusters")).map_err(|source| SimError::Write {
        path: dir.clone(),
        source,
    })?;

    let mut clusters = Vec::with_capacity(config.clusters);
    let mut index = HashMap::with_capacity(config.clusters);
    for i in 0..config.clusters {
        let name = kubeconfig::cluster_name(&config.name_prefix, i, config.clusters);
        let token = objects::token().map_err(|_| SimError::Token)?;
        let labels = kubeconfig::labels(config.seed, i);
        write(
            dir.join(format!("{name}.yaml")),
            &kubeconfig::kubeconfig(
                &name,
                &format!("{base_url}/clusters/{name}"),
                &tls.ca_pem,
                &token,
            ),
        )?;
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
    let admin_token = objects::token().map_err(|_| SimError::Token)?;
    write(dir.join("admin-token"), &admin_token)?;
    write(dir.join("ca.crt"), &tls.ca_pem)?;
    let audit =
        audit::AuditLog::new(config.audit_log.as_ref()).map_err(|source| SimError::Write {
            path: config.audit_log.clone().unwrap_or_default(),
            source,
        })?;
    let cluster_names = clusters.iter().map(|c| c.name.clone()).collect();
    let sim = Arc::new(Sim {
        shared: Arc::new(Shared::new(config)),
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
    let (stop, mut stopped) = watch::channel(false);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    let serving = sim.clone();
    let task = tokio::spawn(async move {
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
            let acceptor = acceptor.clone();
            let sim = serving.clone();
            let mut stop_conn = stopped.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req| router::handle(sim.clone(), req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::select! {
                    _ = conn => {}
                    _ = stop_conn.changed() => {}
                }
            });
        }
    });
    Ok(SimHandle {
        addr,
        base_url,
        dir,
        cluster_names,
        admin_token,
        sim,
        stop,
        task,
    })
}
