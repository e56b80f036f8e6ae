//! `psql-fleet run`: the long-running agent. It reads revisions from the source, serves the
//! last good one to one worker per cluster, and exposes health, metrics and status over
//! HTTP. SIGTERM or Ctrl-C stop the workers between actions, so an apply in flight
//! completes and no prune step is left half done.

pub mod accept;
pub mod commit_status;
pub mod driver;
pub mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::{worker, Accepted, Assignment, Report, Shared};
use crate::metrics::Metrics;
use crate::source::git::{GitRef, GitSource};
use crate::source::{local, Revision, SourceSpec};
use crate::status::StatusReport;
use crate::webhook::Trigger;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
    #[error("rollout state: {0}")]
    State(#[from] fleet_core::rollout::store::Error),
}

/// Everything `run` is told on the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: SourceSpec,
    pub reference: GitRef,
    pub credentials: crate::source::git::Credentials,
    pub cache_dir: PathBuf,
    pub credentials_dir: PathBuf,
    pub listen: SocketAddr,
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    pub interval: Duration,
    pub max_concurrency: usize,
    /// Where the rollout state is kept (default `<cache_dir>/state`).
    pub state_dir: Option<PathBuf>,
    /// GitHub push webhooks that make the Git source fetch at once.
    pub webhook: Option<WebhookConfig>,
}

/// Where webhook deliveries are received, and the secret that signs them.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub secret: crate::webhook::Secret,
}

/// Reads revisions from the source into `out` until the receiver goes away.
/// A Git source also fetches as soon as `trigger` fires (a webhook delivery).
fn spawn_source(
    config: &Config,
    out: mpsc::Sender<Result<Revision, String>>,
    trigger: Trigger,
) -> JoinHandle<()> {
    match &config.source {
        SourceSpec::Dir(dir) => {
            let (tx, mut rx) = mpsc::channel(4);
            tokio::spawn(local::watch(dir.clone(), local::SETTLE, tx));
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    if out.send(r.map_err(|e| e.to_string())).await.is_err() {
                        return;
                    }
                }
            })
        }
        SourceSpec::Git(url) => {
            let source = GitSource {
                url: url.clone(),
                cache_dir: config.cache_dir.clone(),
                reference: config.reference.clone(),
                credentials: config.credentials.clone(),
            };
            let interval = config.interval;
            tokio::spawn(async move {
                let mut last: Option<String> = None;
                loop {
                    let s = source.clone();
                    let result = tokio::task::spawn_blocking(move || s.sync())
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    let fresh = match &result {
                        Ok(r) => last.as_deref() != Some(r.id.as_str()),
                        Err(_) => true,
                    };
                    if let Ok(r) = &result {
                        last = Some(r.id.clone());
                    }
                    if fresh && out.send(result).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = trigger.fired() => tracing::info!("webhook: fetching the source now"),
                    }
                }
            })
        }
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let listener = bind(config.listen).await?;
    serve(config, listener, Vec::new(), shutdown).await
}

/// [`run`] on a listener bound by the caller (`config.listen` is then not used), so that a
/// caller binding port 0 knows the port without racing anyone for it.
pub async fn run_on(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    serve(config, listener, Vec::new(), shutdown).await
}

/// [`run`], telling `observers` of every rollout wave transition.
pub async fn run_with_observers(
    config: Config,
    observers: Vec<Arc<dyn driver::WaveObserver>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let listener = bind(config.listen).await?;
    serve(config, listener, observers, shutdown).await
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })
}

/// A cluster's worker: its task, and where its assignment is sent.
struct Worker {
    assignment: watch::Sender<Assignment>,
    task: JoinHandle<()>,
}

/// Sends each worker its assignment, where it changed.
fn assign(
    workers: &BTreeMap<String, Worker>,
    newest: &Arc<Accepted>,
    rollouts: &driver::RolloutDriver,
) {
    for (name, worker) in workers {
        let assignment = Assignment {
            newest: newest.clone(),
            given: rollouts.given(name),
        };
        worker.assignment.send_if_modified(|current| {
            let changed = *current != assignment;
            if changed {
                *current = assignment;
            }
            changed
        });
    }
}

async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    observers: Vec<Arc<dyn driver::WaveObserver>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new()?);
    let status = Arc::new(RwLock::new(StatusReport {
        dry_run: config.dry_run,
        ..StatusReport::default()
    }));
    if let Ok(mut s) = status.write() {
        s.source.source = match &config.source {
            SourceSpec::Dir(d) => d.display().to_string(),
            SourceSpec::Git(u) => crate::source::git::redact_url(u),
        };
    }
    // A dry run must not move the real agent's rollout: its state stays in memory.
    let store = if config.dry_run {
        None
    } else {
        let dir = config
            .state_dir
            .clone()
            .unwrap_or_else(|| config.cache_dir.join("state"));
        Some(fleet_core::rollout::store::Store::open(&dir)?)
    };
    let rollouts = Arc::new(driver::RolloutDriver::open(
        store,
        metrics.clone(),
        status.clone(),
        observers,
    )?);
    let listen = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(%listen, "serving /livez /readyz /metrics /api/v1/status");
    let endpoints = Arc::new(http::Endpoints {
        metrics: metrics.clone(),
        status: status.clone(),
        rollouts: rollouts.clone(),
    });
    let server = tokio::spawn(endpoints.serve(listener));

    let (reports_tx, mut reports) = mpsc::channel::<Report>(1024);
    let mut given_changed = rollouts.subscribe();
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        status: status.clone(),
        semaphore: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
        credentials_dir: config.credentials_dir.clone(),
        dry_run: config.dry_run,
        allow_mass_prune: config.allow_mass_prune,
        resync: config.interval,
        call_timeout: Duration::from_secs(15),
        reports: reports_tx,
    });
    let trigger = Trigger::new();
    let webhook_task = match &config.webhook {
        Some(webhook) => {
            let listener = tokio::net::TcpListener::bind(webhook.listen)
                .await
                .map_err(|source| Error::Listen {
                    addr: webhook.listen,
                    source,
                })?;
            tracing::info!(listen = %webhook.listen, path = crate::webhook::PATH, "receiving GitHub webhooks");
            Some(tokio::spawn(crate::webhook::serve(
                listener,
                webhook.secret.clone(),
                trigger.clone(),
            )))
        }
        None => None,
    };
    let (revisions_tx, mut revisions) = mpsc::channel(4);
    let source_task = spawn_source(&config, revisions_tx, trigger);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut newest: Option<Arc<Accepted>> = None;
    let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
    let mut ready_tick = tokio::time::interval(Duration::from_millis(500));
    let mut rollout_tick = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = rollout_tick.tick() => rollouts.tick(),
            Some(report) = reports.recv() => rollouts.report(&report.cluster, report.health),
            changed = given_changed.changed() => {
                if changed.is_ok() {
                    if let Some(newest) = &newest {
                        assign(&workers, newest, &rollouts);
                    }
                }
            }
            _ = ready_tick.tick() => {
                let clusters = newest.as_ref().map_or(0, |a| a.fleet.clusters.len());
                if let Ok(mut s) = status.write() {
                    s.ready = http::is_ready(&s, clusters);
                }
            }
            revision = revisions.recv() => {
                let Some(revision) = revision else { break };
                let revision = match revision {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the fleet source");
                        if let Ok(mut s) = status.write() { s.source.last_error = Some(e); }
                        continue;
                    }
                };
                let current = newest.clone();
                match accept::accept(current.as_deref(), &revision, config.allow_mass_prune) {
                    Err(rejected) => {
                        tracing::error!(%rejected, "revision not served; keeping the last good one");
                        let mut diagnostics = Vec::new();
                        if let accept::Rejected::Invalid { diagnostics: d, .. } = &rejected {
                            for diagnostic in d.iter().filter(|d| d.is_error()) {
                                tracing::error!(file = %diagnostic.file, field = ?diagnostic.field, "{diagnostic}");
                                diagnostics.push(diagnostic.to_string());
                            }
                        }
                        if let accept::Rejected::MassPrune { clusters, .. } = &rejected {
                            for cluster in clusters {
                                metrics.count_error(cluster, crate::metrics::ErrorReason::MassPrune);
                            }
                        }
                        let valid = !matches!(rejected, accept::Rejected::Invalid { .. });
                        let served = current.as_ref().map(|c| c.revision.clone()).unwrap_or_default();
                        metrics.set_source(&served, valid, now_seconds());
                        if let Ok(mut s) = status.write() {
                            s.source.rejected = Some(rejected.to_string());
                            s.source.diagnostics = diagnostics;
                            s.source.last_sync = Some(now_rfc3339());
                            s.source.last_error = None;
                        }
                    }
                    Ok(accepted) => {
                        tracing::info!(revision = %revision.short_id(), claims = accepted.fleet.claims.len(), clusters = accepted.fleet.clusters.len(), "serving revision");
                        metrics.set_source(&accepted.revision, true, now_seconds());
                        let clusters: Vec<String> = accepted.fleet.clusters.keys().cloned().collect();
                        if let Ok(mut s) = status.write() {
                            s.source.revision = Some(accepted.revision.clone());
                            s.source.rejected = None;
                            s.source.diagnostics.clear();
                            s.source.last_sync = Some(now_rfc3339());
                            s.source.last_error = None;
                            s.clusters.retain(|name, _| clusters.contains(name));
                        }
                        let accepted = Arc::new(accepted);
                        rollouts.accept(&accepted, &revision.tree);
                        newest = Some(accepted.clone());
                        // A cluster that left the fleet: dropping its assignment ends its worker.
                        workers.retain(|name, _| {
                            let keep = clusters.contains(name);
                            if !keep { metrics.forget_cluster(name); }
                            keep
                        });
                        for name in clusters {
                            if workers.get(&name).is_none_or(|w| w.task.is_finished()) {
                                let (tx, rx) = watch::channel(Assignment {
                                    newest: accepted.clone(),
                                    given: rollouts.given(&name),
                                });
                                let task = worker::run(name.clone(), shared.clone(), rx, stop_rx.clone());
                                workers.insert(name, Worker { assignment: tx, task: tokio::spawn(task) });
                            }
                        }
                        assign(&workers, &accepted, &rollouts);
                    }
                }
            }
        }
    }
    tracing::info!("stopping: letting in-flight actions finish");
    let _ = stop_tx.send(true);
    source_task.abort();
    if let Some(task) = webhook_task {
        task.abort();
    }
    // Reports are not read any more: a worker's last one must not wait for room.
    drop(reports);
    for (_, worker) in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), worker.task).await;
    }
    server.abort();
    // Wait for the abort, so the listener is closed (and its port free) once `run` returns.
    let _ = server.await;
    Ok(())
}
