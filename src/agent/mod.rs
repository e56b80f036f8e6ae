//! `psql-fleet run`: the long-running agent. It reads revisions from the source, serves the
//! last good one to one worker per cluster, and exposes health, metrics and status over
//! HTTP. SIGTERM or Ctrl-C stop the workers between actions, so an apply in flight
//! completes and no prune step is left half done.

pub mod accept;
pub mod approvals;
pub mod commit_status;
pub mod control;
pub mod driver;
pub mod gates;
pub mod http;
mod lanes;
pub mod leader;
mod names;
pub mod state_store;
pub mod workers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::{Accepted, Report, Shared};
use crate::error_chain;
use crate::metrics::{ErrorReason, Metrics};
use crate::source::git::GitRef;
use crate::source::{GitSettings, Revision, SourceSpec};
use crate::status::StatusReport;
use crate::webhook::Trigger;
use fleet_core::rollout::store::Store;
use workers::Workers;

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
    /// The source could not be read at start: a supervisor must see a failure, not an
    /// agent that serves nothing.
    #[error("cannot read the fleet source at start (--wait-for-source waits for it instead): {0}")]
    Source(#[source] crate::source::Error),
    #[error(transparent)]
    Leader(#[from] leader::Error),
    /// The Cluster API management cluster's client cannot be built.
    #[error("--cluster-api: {0}")]
    ClusterApi(#[source] leader::Error),
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
    /// How often each cluster's pass is replayed from what its watches hold
    /// (`--resync-interval`).
    pub resync: Duration,
    pub max_concurrency: usize,
    /// Where the rollout state is kept (default `<cache_dir>/state`).
    pub state_dir: Option<PathBuf>,
    /// GitHub push webhooks that make the Git source fetch at once.
    pub webhook: Option<WebhookConfig>,
    /// A source that cannot be read at start is waited for (and said so in the status)
    /// instead of ending the agent with an error.
    pub wait_for_source: bool,
    /// Who may halt and resume the rollout (and read the status, if it says so).
    pub control: control::Control,
    /// `--verify-commits`: the signatures a Git revision must carry.
    pub verify: Option<crate::source::verify::Policy>,
    /// `--leader-elect`: write to fleet clusters only while holding the Lease.
    pub leader_election: Option<leader::Settings>,
    /// `--shards N` (with `--leader-elect`): the fleet's clusters split into N shards, each
    /// written by the replica holding its Lease; 1 is no sharding (the leader writes to
    /// every cluster).
    pub shards: u32,
    /// `--prometheus-url`: where the waves' metric gates are asked.
    pub gates: gates::Settings,
    /// `--github-repo`: a wave waiting for approval is approved from the pull request of
    /// its commit, asked this often.
    pub github_approvals: Option<(crate::github::Client, Duration)>,
    /// `--cluster-api`: clusters found on a Cluster API management cluster join the fleet.
    pub cluster_api: Option<crate::cluster_api::Settings>,
}

/// Where webhook deliveries are received, and the secret that signs them.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub secret: crate::webhook::Secret,
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

async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    observers: Vec<Arc<dyn driver::WaveObserver>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    // The management cluster's client first: a leader-elected agent that cannot reach it
    // is a configuration error, said at start.
    let management = match &config.leader_election {
        Some(settings) => {
            settings.check()?;
            let user_agent = crate::cluster::transport::user_agent(Some(&settings.identity));
            Some(leader::client(settings.kubeconfig.as_deref(), &user_agent).await?)
        }
        None => None,
    };
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
    // Found on every replica (it only reads), so a new leader serves at once.
    let inventory = match &config.cluster_api {
        Some(settings) => {
            let user_agent = crate::cluster::transport::user_agent(Some(&replica(&config)));
            let client = leader::client(settings.kubeconfig.as_deref(), &user_agent)
                .await
                .map_err(Error::ClusterApi)?;
            tracing::info!(namespaces = ?settings.namespaces, "finding clusters on the Cluster API management cluster");
            Some(crate::cluster_api::spawn(client, settings, status.clone()))
        }
        None => None,
    };
    // A replica under leader election writes nothing (not even its rollout state) until
    // it leads.
    let fence = match &config.leader_election {
        Some(_) => leader::Fence::closed(),
        None => leader::Fence::open(),
    };
    let kept = keep_state(&config, management.as_ref(), &fence)?;
    if let (Ok(mut s), Some(maps)) = (status.write(), &kept.config_maps) {
        s.state = Some(crate::status::StateStatus {
            kept_in: maps.describe(),
            error: None,
        });
    }
    let rollouts = Arc::new(driver::RolloutDriver::open(
        kept.keeper,
        kept.loaded,
        metrics.clone(),
        status.clone(),
        observers,
    ));
    let listen = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(%listen, "serving /livez /readyz /metrics /api/v1/status");
    match &config.control.tokens {
        Some(tokens) => tracing::info!(
            ?tokens,
            status_requires_token = config.control.status_requires_token,
            "rollout controls need a bearer token"
        ),
        None => tracing::info!("rollout controls off (no --control-token-file)"),
    }
    let endpoints = Arc::new(http::Endpoints {
        metrics: metrics.clone(),
        status: status.clone(),
        rollouts: rollouts.clone(),
        control: Arc::new(config.control.clone()),
    });
    let server = tokio::spawn(endpoints.serve(listener));
    let gates_task = gates::spawn(config.gates.clone(), rollouts.clone());
    let approvals_task = config
        .github_approvals
        .clone()
        .map(|(client, every)| approvals::spawn(client, rollouts.clone(), every));
    let trigger = Trigger::new();
    let webhook_task = match &config.webhook {
        Some(webhook) => Some(serve_webhook(webhook, trigger.clone()).await?),
        None => None,
    };
    let shards = match (&management, &config.leader_election) {
        (Some(client), Some(settings)) if config.shards > 1 => {
            let shards = leader::shards::spawn(
                client.clone(),
                settings.clone(),
                config.shards,
                status.clone(),
            );
            let health = state_store::shard_health::spawn_writer(
                client.clone(),
                &settings.namespace,
                &settings.lease_name,
                shards.fences.clone(),
                settings.retry_period,
            );
            let status_task = state_store::shard_status::spawn(
                client.clone(),
                &settings.namespace,
                &settings.lease_name,
                &settings.identity,
                shards.fences.clone(),
                status.clone(),
                settings.retry_period,
            );
            Some(Sharded {
                shards,
                health,
                management: client.clone(),
                status_task,
            })
        }
        _ => None,
    };
    let mut elector = match (management, &config.leader_election) {
        (Some(client), Some(settings)) => Some(leader::Elector::spawn(
            client,
            settings.clone(),
            fence.clone(),
            status.clone(),
        )),
        _ => None,
    };
    let leader_gauge = elector.as_ref().map(|(role, _, _)| {
        metrics.set_leader(false);
        tokio::spawn(follow_role(role.clone(), metrics.clone()))
    });
    let term = Term {
        config: &config,
        metrics: &metrics,
        status: &status,
        rollouts: &rollouts,
        trigger: &trigger,
        fence: &fence,
        state_maps: kept.config_maps.as_ref(),
        inventory: inventory.as_ref(),
        shards: shards.as_ref(),
    };
    tokio::pin!(shutdown);
    let outcome = loop {
        // A standby starts nothing that writes: it waits for the Lease. Under sharding it
        // writes to the clusters of the shards it holds, and follows the leader's rollout.
        if let Some((role, _, _)) = elector.as_mut().filter(|_| shards.is_none()) {
            let leads = tokio::select! {
                _ = &mut shutdown => false,
                r = role.wait_for(|r| r.leads()) => r.is_ok(),
            };
            if !leads {
                break Ok(());
            }
        }
        let role = elector.as_ref().map(|(role, _, _)| role.clone());
        match term.run(role, shutdown.as_mut()).await {
            Ended::Stopped(result) => break result,
            Ended::LostLease => term.forget_clusters(),
            // Still leading: the next term reads the state back first.
            Ended::StateConflict => term.forget_clusters(),
        }
    };
    if let Some(task) = webhook_task {
        task.abort();
    }
    if let Some(task) = leader_gauge {
        task.abort();
    }
    if let Some(sharded) = shards {
        sharded.status_task.abort();
        sharded.shards.release().await;
    }
    if let Some((_, releaser, task)) = elector {
        task.abort();
        releaser.release().await;
    }
    gates_task.abort();
    if let Some(inventory) = inventory {
        inventory.task.abort();
    }
    if let Some(task) = approvals_task {
        task.abort();
    }
    server.abort();
    // Wait for the abort, so the listener is closed (and its port free) once `run` returns.
    let _ = server.await;
    outcome
}

/// How a term of serving the fleet ended.
enum Ended {
    /// Shutdown, or the source could not be read at start.
    Stopped(Result<(), Error>),
    /// The leader lease was lost: the workers were stopped; take it again first.
    LostLease,
    /// The rollout state on the management cluster was written by someone else: the
    /// workers were stopped; read it back before deciding anything more.
    StateConflict,
}

/// What a term of serving the fleet (the whole run, or one leadership) works with.
struct Term<'a> {
    config: &'a Config,
    metrics: &'a Arc<Metrics>,
    status: &'a Arc<RwLock<StatusReport>>,
    rollouts: &'a Arc<driver::RolloutDriver>,
    trigger: &'a Trigger,
    fence: &'a leader::Fence,
    /// Where the rollout state is kept under leader election, read back at every term.
    state_maps: Option<&'a Arc<state_store::config_maps::ConfigMaps>>,
    /// `--cluster-api`: what is found there joins every revision served.
    inventory: Option<&'a crate::cluster_api::Inventory>,
    /// Under `--shards`: the shards this replica holds.
    shards: Option<&'a Sharded>,
}

/// What a replica works with under `--shards`.
struct Sharded {
    shards: leader::shards::Shards,
    /// Where the workers' reports go, for the leader's decisions.
    health: mpsc::UnboundedSender<state_store::shard_health::Published>,
    /// The management cluster, where the leader reads the shards' health.
    management: kube::Client,
    /// Publishes this replica's clusters' status and reads the other shards'.
    status_task: JoinHandle<()>,
}

/// Resolves once `role` says this replica does not lead any more, or leads in a later term
/// (it lost the Lease and took it again before this was polled: the term's workers are
/// ended all the same); never without leader election.
async fn lease_lost(role: &mut Option<(watch::Receiver<leader::Role>, leader::Role)>) {
    match role {
        Some((role, term)) => {
            let term = *term;
            let _ = role.wait_for(|r| *r != term).await;
        }
        None => std::future::pending().await,
    }
}

impl Term<'_> {
    /// Reads the source, drives the rollout and runs the cluster workers until shutdown or,
    /// under leader election, until the lease is lost.
    async fn run(
        &self,
        role: Option<watch::Receiver<leader::Role>>,
        mut shutdown: Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Ended {
        let config = self.config;
        // The leadership this term serves: it ends when that one does.
        let mut role = role.map(|r| {
            let term = *r.borrow();
            (r, term)
        });
        // Under sharding every replica serves its shards; only the leader decides the
        // rollout, the others follow the state it keeps.
        let decides = self.shards.is_none() || role.as_ref().is_some_and(|(_, r)| r.leads());
        let following = self.state_maps.filter(|_| !decides);
        let mut conflicts = match self.state_maps.filter(|_| decides) {
            Some(maps) => {
                tokio::select! {
                    _ = &mut shutdown => return Ended::Stopped(Ok(())),
                    _ = lease_lost(&mut role) => return Ended::LostLease,
                    () = self.read_state_back(maps) => {}
                }
                Some(maps.conflicts())
            }
            None => None,
        };
        let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
        let mut given_changed = self.rollouts.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (kubeconfigs, kubeconfigs_task) =
            crate::cluster::credentials::watch(config.credentials_dir.clone(), config.interval);
        let shared = Arc::new(Shared {
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            semaphore: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            credentials_dir: config.credentials_dir.clone(),
            kubeconfigs,
            cluster_api_kubeconfigs: self.inventory.map(|i| i.kubeconfigs.clone()),
            dry_run: config.dry_run,
            allow_mass_prune: config.allow_mass_prune,
            resync: config.resync,
            recheck: config.interval,
            call_timeout: Duration::from_secs(15),
            reports: reports_tx,
            identity: identity(),
            user_agent: crate::cluster::transport::user_agent(Some(&replica(config))),
            reached: Default::default(),
            fence: self.fence.clone(),
            joined: self.rollouts.joined(),
        });
        let mut workers = Workers::new(shared, stop_rx);
        let sharded = self.shards;
        let shards = sharded.map(|s| &s.shards);
        let mut held = shards.map(|s| s.held.clone());
        if let (Some(shards), Some(held)) = (shards, held.as_mut()) {
            workers = workers.sharded(&shards.fences);
            let now = held.borrow_and_update().clone();
            workers.hold(&now).await;
            shards.running.send_replace(now.keys().copied().collect());
        }
        let mut agent = Agent {
            allow_mass_prune: config.allow_mass_prune,
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            rollouts: self.rollouts.clone(),
            workers,
            newest: None,
            names: names::Kept::open(names_dir(config).as_deref()),
            decides,
        };
        // The shard metrics exist from the start, at 0 clusters until a revision is read.
        agent.count_served();
        let mut follow_tick = tokio::time::interval(
            config
                .leader_election
                .as_ref()
                .map_or(Duration::from_secs(2), |s| s.retry_period),
        );
        let mut followed: Option<String> = None;
        // The leader, sharded: the health of the clusters other replicas serve.
        let mut health_of_others = match (sharded, &config.leader_election) {
            (Some(s), Some(settings)) if decides => Some(state_store::shard_health::Reader::new(
                s.management.clone(),
                &settings.namespace,
                &settings.lease_name,
            )),
            _ => None,
        };
        let shard_count = shards.map_or(1, |s| u32::try_from(s.fences.len()).unwrap_or(1));
        let (revisions_tx, mut revisions) = mpsc::channel(4);
        let git = GitSettings {
            cache_dir: config.cache_dir.clone(),
            reference: config.reference.clone(),
            credentials: config.credentials.clone(),
            interval: config.interval,
            verify: config.verify.clone(),
        };
        let source_task =
            crate::source::spawn(&config.source, git, revisions_tx, self.trigger.clone());
        let mut rollout_tick = tokio::time::interval(Duration::from_millis(250));
        let mut read_once = false;
        let mut found = self.inventory.map(|i| i.found.clone());
        let mut composing = Composing::default();
        let outcome = loop {
            tokio::select! {
                _ = &mut shutdown => break Ended::Stopped(Ok(())),
                _ = lease_lost(&mut role) => break Ended::LostLease,
                _ = state_conflict(&mut conflicts) => break Ended::StateConflict,
                // The workers' reports are taken here, all those waiting, rather than as
                // each comes: the rollout acts on them only when it ticks, and a report
                // read at once woke this thread for it, about four times a cluster at a
                // cold start (10,000 clusters: 38,000-40,000 wakes and 1.4-1.6 s of its
                // CPU before, about 400 and 0.8 s after).
                _ = rollout_tick.tick() => {
                    while let Ok(report) = reports.try_recv() {
                        if let Some(s) = sharded {
                            let _ = s.health.send(state_store::shard_health::Published {
                                shard: fleet_core::shard::shard_of(&report.cluster, shard_count),
                                cluster: report.cluster.clone(),
                                health: report.health.clone(),
                            });
                        }
                        if decides {
                            agent.rollouts.report(&report.cluster, report.health);
                        }
                    }
                    if decides {
                        agent.rollouts.tick();
                    }
                }
                _ = held_changed(&mut held) => {
                    if let (Some(shards), Some(held)) = (shards, held.as_mut()) {
                        let now = held.borrow_and_update().clone();
                        agent.workers.hold(&now).await;
                        shards.running.send_replace(now.keys().copied().collect());
                        agent.follow_newest();
                    }
                }
                // Every retry period, under sharding: a replica that does not lead takes
                // up the leader's decisions, the leader the other shards' health.
                _ = follow_tick.tick(), if sharded.is_some() => {
                    if let Some(maps) = following {
                        followed = follow_state(maps, &agent.rollouts, followed).await;
                    }
                    if let Some(reader) = health_of_others.as_mut() {
                        agent.report_others(reader).await;
                    }
                }
                changed = given_changed.changed() => {
                    if changed.is_ok() {
                        agent.assign();
                    }
                }
                _ = inventory_changed(&mut found) => composing.serve(&mut agent, found.as_ref()),
                revision = revisions.recv() => match revision {
                    // Read, and refused: a verdict on a revision, whether or not one was read
                    // before, never a reason to stop.
                    Some(Err(crate::source::Error::Unverified(refused))) => {
                        agent.reject(accept::Rejected::Unverified {
                            revision: refused.commit.get(..12).unwrap_or(&refused.commit).to_string(),
                            refused,
                        });
                    }
                    Some(Err(e)) if !read_once && !config.wait_for_source => {
                        break Ended::Stopped(Err(Error::Source(e)));
                    }
                    Some(Err(e)) if !read_once => agent.wait_for_source(&e),
                    Some(revision) => {
                        read_once |= revision.is_ok();
                        match (revision, &found) {
                            (Ok(revision), Some(_)) => {
                                composing.source = Some(revision);
                                composing.serve(&mut agent, found.as_ref());
                            }
                            (revision, _) => agent.receive(revision),
                        }
                    }
                    None => break Ended::Stopped(Ok(())),
                },
            }
        };
        let _ = stop_tx.send(true);
        source_task.abort();
        // Reports are not read any more.
        drop(reports);
        if let Some(shards) = shards {
            shards.running.send_replace(BTreeSet::new());
        }
        match outcome {
            Ended::LostLease if self.shards.is_some() => {
                // Its role changed: the next term serves the same shards, deciding the
                // rollout or following it.
                tracing::info!("this replica's role changed; restarting its shards' workers");
                agent.workers.abort().await;
            }
            Ended::LostLease | Ended::StateConflict => {
                // The fence already refuses every write; the workers are ended at once
                // rather than let finish, since another replica may lead by now.
                tracing::warn!("stopping the cluster workers: not the leader any more");
                agent.workers.abort().await;
            }
            Ended::Stopped(_) => {
                tracing::info!("stopping: letting in-flight actions finish");
                agent.workers.join(Duration::from_secs(30)).await;
            }
        }
        kubeconfigs_task.abort();
        outcome
    }

    /// Reads the rollout state from the management cluster until it can: deciding on
    /// anything else would start the rollout over, giving the newest revision to clusters
    /// of waves that have not been reached.
    async fn read_state_back(&self, maps: &state_store::config_maps::ConfigMaps) {
        let mut wait = Duration::from_millis(500);
        loop {
            match maps.load().await {
                Ok(loaded) => {
                    self.set_state_error(None);
                    self.rollouts.adopt(loaded);
                    return;
                }
                Err(e) => {
                    let e = error_chain::chain(&e);
                    tracing::error!(error = %e, retry_in = ?wait, "cannot read the rollout state back; nothing is written to fleet clusters until it is read");
                    self.set_state_error(Some(e));
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn set_state_error(&self, error: Option<String>) {
        if let Ok(mut s) = self.status.write() {
            if let Some(state) = s.state.as_mut() {
                state.error = error;
            }
        }
    }

    /// After a lost lease: no cluster is reported on, as a standby reports none (another
    /// replica's series are the fleet's now).
    fn forget_clusters(&self) {
        if let Ok(mut s) = self.status.write() {
            for cluster in s.clusters.keys() {
                self.metrics.forget_cluster(cluster);
            }
            s.clusters.clear();
        }
    }
}

/// The newest source revision, to be served with what Cluster API found.
#[derive(Default)]
struct Composing {
    source: Option<Revision>,
}

impl Composing {
    /// Serves the source's revision with the inventory found; nothing until both are there,
    /// since a revision without the inventory would look like every found cluster removed.
    fn serve(&self, agent: &mut Agent, found: Option<&crate::cluster_api::Found>) {
        let snapshot = found.and_then(|f| f.borrow().clone());
        match (&self.source, snapshot) {
            (Some(source), Some(snapshot)) => {
                agent.receive(Ok(source.with_inventory(&snapshot.inventory)));
            }
            (Some(source), None) => {
                tracing::info!(revision = %source.short_id(), "waiting for the Cluster API inventory before serving the revision");
            }
            (None, _) => {}
        }
    }
}

/// Resolves when the Cluster API inventory changed; never without `--cluster-api`.
async fn inventory_changed(found: &mut Option<crate::cluster_api::Found>) {
    match found {
        Some(f) => {
            if f.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the shards held change; never without sharding.
async fn held_changed(held: &mut Option<watch::Receiver<leader::shards::Held>>) {
    match held {
        Some(h) => {
            if h.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// A replica that does not lead, under sharding: takes up the rollout state the leader
/// wrote, when it changed since `seen`; the version now followed.
async fn follow_state(
    maps: &state_store::config_maps::ConfigMaps,
    rollouts: &driver::RolloutDriver,
    seen: Option<String>,
) -> Option<String> {
    let known = rollouts.known_revisions();
    match maps.read_if_changed(seen.as_deref(), &known).await {
        Ok(Some((version, loaded))) => {
            rollouts.follow(loaded);
            Some(version)
        }
        Ok(None) => seen,
        Err(e) => {
            tracing::warn!(error = %error_chain::chain(&e), "cannot read the leader's rollout state; following what was read before");
            seen
        }
    }
}

/// Keeps `psql_fleet_leader` to what the elector says.
async fn follow_role(mut role: watch::Receiver<leader::Role>, metrics: Arc<Metrics>) {
    loop {
        let leads = role.borrow_and_update().leads();
        metrics.set_leader(leads);
        if role.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves when the rollout state's ConfigMap was written by someone else; never without
/// one.
async fn state_conflict(conflicts: &mut Option<watch::Receiver<u64>>) {
    match conflicts {
        Some(c) => {
            if c.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Where the rollout state is kept, and what was kept before.
struct Kept {
    keeper: Option<Arc<dyn state_store::Keeper>>,
    loaded: state_store::Loaded,
    config_maps: Option<Arc<state_store::config_maps::ConfigMaps>>,
}

/// Under leader election in ConfigMaps on the management cluster, read back whenever a
/// term of leading begins; else in the state directory, read now. A dry run must not move
/// the real agent's rollout: its state stays in memory.
fn keep_state(
    config: &Config,
    management: Option<&kube::Client>,
    fence: &leader::Fence,
) -> Result<Kept, Error> {
    if config.dry_run {
        return Ok(Kept {
            keeper: None,
            loaded: state_store::Loaded::default(),
            config_maps: None,
        });
    }
    if let (Some(client), Some(settings)) = (management, &config.leader_election) {
        let maps = Arc::new(state_store::config_maps::ConfigMaps::spawn(
            client.clone(),
            &settings.namespace,
            &settings.lease_name,
            &settings.identity,
            fence.clone(),
        ));
        return Ok(Kept {
            keeper: Some(maps.clone()),
            loaded: state_store::Loaded::default(),
            config_maps: Some(maps),
        });
    }
    let dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| config.cache_dir.join("state"));
    let disk = state_store::Disk(Store::open(&dir)?);
    let loaded = disk.load()?;
    Ok(Kept {
        keeper: Some(Arc::new(disk)),
        loaded,
        config_maps: None,
    })
}

/// Where the fleet's earlier names are kept: beside the rollout state, and, like it, not
/// for a dry run.
fn names_dir(config: &Config) -> Option<std::path::PathBuf> {
    (!config.dry_run).then(|| {
        config
            .state_dir
            .clone()
            .unwrap_or_else(|| config.cache_dir.join("state"))
    })
}

/// Which replica this is: its identity in leader election, else its host.
fn replica(config: &Config) -> String {
    match &config.leader_election {
        Some(settings) => settings.identity.clone(),
        None => host(),
    }
}

/// The host this agent runs on (a pod's name in Kubernetes).
fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// How this agent names itself on what it applies: its host and process.
fn identity() -> String {
    format!("psql-fleet on {}, pid {}", host(), std::process::id())
}

async fn serve_webhook(webhook: &WebhookConfig, trigger: Trigger) -> Result<JoinHandle<()>, Error> {
    let listener = bind(webhook.listen).await?;
    tracing::info!(listen = %webhook.listen, path = crate::webhook::PATH, "receiving GitHub webhooks");
    Ok(tokio::spawn(crate::webhook::serve(
        listener,
        webhook.secret.clone(),
        trigger,
    )))
}

/// The run loop's state: what is served, and to whom.
struct Agent {
    allow_mass_prune: bool,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<StatusReport>>,
    rollouts: Arc<driver::RolloutDriver>,
    workers: Workers,
    /// The newest revision accepted.
    newest: Option<Arc<Accepted>>,
    names: names::Kept,
    /// Whether this replica decides the rollout: always, unless sharded and not leading.
    decides: bool,
}

impl Agent {
    fn with_status(&self, f: impl FnOnce(&mut StatusReport)) {
        if let Ok(mut s) = self.status.write() {
            f(&mut s);
        }
    }

    /// Counts the clusters this replica serves, for readiness and the shard metrics: after
    /// every change of the revision served or of the shards held, the only times it moves.
    fn count_served(&self) {
        let clusters = self.newest.as_ref().map_or(0, |a| {
            a.fleet
                .clusters
                .keys()
                .filter(|c| self.workers.serves(c))
                .count()
        });
        self.with_status(|s| s.served_clusters = clusters);
        if let Some((count, held)) = self.workers.shards() {
            let mut per_shard: BTreeMap<u32, usize> = held.into_iter().map(|s| (s, 0)).collect();
            for cluster in self.newest.iter().flat_map(|a| a.fleet.clusters.keys()) {
                if let Some(n) = per_shard.get_mut(&fleet_core::shard::shard_of(cluster, count)) {
                    *n += 1;
                }
            }
            self.metrics.set_shards(count, &per_shard);
        }
    }

    /// The leader, sharded: the health other replicas published for the clusters of their
    /// shards, judged as their own reports are.
    async fn report_others(&self, reader: &mut state_store::shard_health::Reader) {
        match reader.changed(self.rollouts.asked()).await {
            Ok(health) => {
                for (cluster, health) in health {
                    if !self.workers.serves(&cluster) {
                        self.rollouts.report(&cluster, health);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sharding: cannot read the shards' cluster health; the rollout waits on what was read before");
            }
        }
    }

    /// Workers for the clusters served now (under sharding, the shards held changed).
    fn follow_newest(&mut self) {
        if let Some(newest) = &self.newest {
            self.workers.follow(newest, &self.rollouts);
        }
        self.count_served();
    }

    fn assign(&self) {
        if let Some(newest) = &self.newest {
            self.workers.assign(newest, &self.rollouts);
        }
    }

    /// `--wait-for-source`: nothing read yet, and the status says what it waits for.
    fn wait_for_source(&self, e: &crate::source::Error) {
        let e = error_chain::chain(e);
        tracing::warn!(error = %e, "waiting for the fleet source (--wait-for-source)");
        self.with_status(|s| {
            s.source.last_error = Some(format!("waiting for the fleet source: {e}"));
        });
    }

    /// What the source read: a revision to judge, or why there was none. An unreadable
    /// source changes nothing served: a directory that vanished is not an empty fleet.
    fn receive(&mut self, revision: Result<Revision, crate::source::Error>) {
        let revision = match revision {
            Ok(r) => r,
            Err(e) => {
                let e = error_chain::chain(&e);
                tracing::warn!(error = %e, "cannot read the fleet source; keeping the last good revision");
                self.with_status(|s| s.source.last_error = Some(e));
                return;
            }
        };
        if self
            .newest
            .as_ref()
            .is_some_and(|n| n.revision == revision.id)
        {
            // Readable again, or fixed back, with what is served already: nothing to roll
            // out again, but the newest revision is valid again.
            tracing::info!(revision = %revision.short_id(), "the fleet source is readable again");
            self.metrics.set_source(&revision.id, true, now_seconds());
            self.with_status(|s| {
                s.source.rejected = None;
                s.source.diagnostics.clear();
                s.source.last_sync = Some(now_rfc3339());
                s.source.last_error = None;
            });
            return;
        }
        match accept::accept(self.newest.as_deref(), &revision, self.allow_mass_prune) {
            Err(rejected) => self.reject(rejected),
            Ok(mut accepted) => {
                let name = &accepted.fleet.settings.name;
                if let Some(old) = self.names.serve(name) {
                    tracing::warn!(from = %old, to = %name, "fleet renamed: what the old name labels is relabelled, or pruned where the fleet dropped it");
                }
                accepted.former_names = self.names.names.former.clone();
                self.serve_revision(accepted, &revision)
            }
        }
    }

    /// A revision not served: said everywhere, and the last good one stays.
    fn reject(&self, rejected: accept::Rejected) {
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
                self.metrics.count_error(cluster, ErrorReason::MassPrune);
            }
        }
        let valid = !matches!(
            rejected,
            accept::Rejected::Invalid { .. } | accept::Rejected::Unverified { .. }
        );
        let served = self
            .newest
            .as_ref()
            .map(|c| c.revision.clone())
            .unwrap_or_default();
        self.metrics.set_source(&served, valid, now_seconds());
        self.metrics.set_source_rejected(rejected.reason());
        self.with_status(|s| {
            s.source.rejected = Some(rejected.to_string());
            s.source.diagnostics = diagnostics;
            s.source.last_sync = Some(now_rfc3339());
            s.source.last_error = None;
        });
    }

    /// A revision accepted: kept for the rollout, and its clusters given workers.
    fn serve_revision(&mut self, accepted: Accepted, revision: &Revision) {
        tracing::info!(revision = %revision.short_id(), claims = accepted.fleet.claims.len(), clusters = accepted.fleet.clusters.len(), verified = revision.verified.as_deref().unwrap_or("not checked"), "serving revision");
        self.metrics
            .set_source(&accepted.revision, true, now_seconds());
        self.with_status(|s| {
            s.source.revision = Some(accepted.revision.clone());
            s.source.verified.clone_from(&revision.verified);
            s.source.rejected = None;
            s.source.diagnostics.clear();
            s.source.last_sync = Some(now_rfc3339());
            s.source.last_error = None;
        });
        let accepted = Arc::new(accepted);
        if self.decides {
            self.rollouts.accept(&accepted, &revision.tree);
        }
        self.workers.follow(&accepted, &self.rollouts);
        self.newest = Some(accepted);
        self.count_served();
    }
}
