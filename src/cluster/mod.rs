//! The I/O edge towards the clusters: one worker task per `Cluster` file, each with its own
//! client, watches and backoff, so a down or slow cluster never delays the others. The
//! decisions are `fleet_core::reconcile`'s; a worker only feeds it live state and carries
//! out the actions it returns.
//!
//! A worker has one input, its [`Assignment`] (replaced whole through a watch channel by the
//! agent), and one output upwards, its rollout [`Health`] after each pass (sent on a
//! channel); what it learns about its cluster it also publishes to the metrics and the
//! status report.
//!
//! - [`worker`]: connect from the kubeconfig, reconnect with backoff;
//! - [`credentials`]: changes in the credentials directory, for the kubeconfigs' re-check;
//! - [`session`]: one connection's life: watches, resync, retries, reachability;
//! - [`live_view`]: the cluster's objects as the watch events say they are;
//! - [`pass`]: one reconcile pass: plan, carry out the actions, report.

pub mod apis;
pub mod apply;
pub mod client;
pub mod credentials;
pub mod http2;
pub mod identity;
pub mod kubeconfig;
pub mod list;
pub mod live_view;
pub mod namespace;
pub mod pass;
pub mod session;
pub mod transport;
pub mod watch;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::metrics::Metrics;
use crate::status::{ClusterStatus, StatusReport};
use fleet_core::fleetdir::LoadedFleet;
use fleet_core::model::fleet::RemovedClusters;
use fleet_core::model::Cluster;
use fleet_core::rollout::Health;

/// A revision that passed validation and the fleet-wide mass-prune guard.
#[derive(Debug)]
pub struct Accepted {
    pub revision: String,
    pub fleet: LoadedFleet,
    /// Whether an earlier revision was accepted in this process, so the fleet-wide guard
    /// compared against it; when not, each cluster guards its first prune itself.
    pub has_baseline: bool,
    /// The fleet's earlier names (renames in `fleet.yaml`), newest last: objects labelled
    /// with them are this fleet's to relabel or prune.
    pub former_names: Vec<String>,
}

/// Everything one worker is told, replaced whole whenever any part of it changes.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// The newest served revision: how to reach the cluster (its entry), which inventory
    /// to watch (the fleet's name), and which claims it should hold once its wave comes.
    pub newest: Arc<Accepted>,
    /// What the rollout gives this cluster now.
    pub given: Given,
    /// Moves when the rollout forgot the workers' reports (a resume, or a replica taking
    /// the rollout up): a changed assignment, so the cluster reports again at once, not
    /// at its next resync.
    pub asked: u64,
}

/// The revision a cluster is reconciled to, as the rollout decides it.
#[derive(Clone, Debug)]
pub enum Given {
    /// Reconcile to this revision: a later wave keeps the previous one (drift correction
    /// included) until its turn.
    Revision(Arc<Accepted>),
    /// Nothing yet: the cluster waits for its wave (no write, no prune).
    Waiting { wave: Option<String> },
    /// The revision the cluster was given cannot be read back (after a restart).
    Missing(String),
}

impl PartialEq for Given {
    fn eq(&self, other: &Given) -> bool {
        match (self, other) {
            (Given::Revision(a), Given::Revision(b)) => Arc::ptr_eq(a, b),
            (Given::Waiting { wave: a }, Given::Waiting { wave: b }) => a == b,
            (Given::Missing(a), Given::Missing(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Assignment {
    fn eq(&self, other: &Assignment) -> bool {
        Arc::ptr_eq(&self.newest, &other.newest)
            && self.given == other.given
            && self.asked == other.asked
    }
}

impl Assignment {
    /// The cluster's entry in the newest revision; `None` once it left the fleet.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.newest.fleet.clusters.get(name)
    }

    /// Whether a cluster that left the fleet is emptied before its worker ends.
    pub fn leaving_prunes(&self) -> bool {
        self.newest.fleet.settings.removed_clusters() == RemovedClusters::Prune
    }

    /// Whether `other` reaches cluster `name` differently: a session must start over. A
    /// cluster that left the fleet keeps the entry it had, so leaving is no change here.
    pub fn reconnects(&self, other: &Assignment, name: &str) -> bool {
        matches!((self.cluster(name), other.cluster(name)), (Some(a), Some(b)) if a != b)
    }
}

/// A worker's report after a pass, for the rollout gate.
#[derive(Debug)]
pub struct Report {
    pub cluster: String,
    pub health: Health,
}

/// What every worker shares.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub status: Arc<RwLock<StatusReport>>,
    /// Bounds the clusters being written to at once across the fleet.
    pub semaphore: Arc<Semaphore>,
    pub credentials_dir: PathBuf,
    /// Changes in the credentials directory: a worker re-checks its kubeconfig on each.
    pub kubeconfigs: credentials::Changes,
    /// `--cluster-api`: the kubeconfig Secrets of the clusters found there.
    pub cluster_api_kubeconfigs: Option<crate::cluster_api::Kubeconfigs>,
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// How often a worker replays a pass (no writes when nothing changed); its kubeconfig
    /// is re-checked on [`Shared::kubeconfigs`].
    pub resync: Duration,
    /// How often a worker asks again for the APIs its cluster lacked (`--interval`).
    pub recheck: Duration,
    /// Bound on every API call.
    pub call_timeout: Duration,
    /// Where the workers' health reports go: read on the rollout's tick, not as each comes
    /// (see `Agent::serve`), so unbounded; a tick takes every one waiting.
    pub reports: mpsc::UnboundedSender<Report>,
    /// Who this agent is, written on every object it applies, so that another agent on the
    /// same objects can be named.
    pub identity: String,
    /// The User-Agent of every request to fleet clusters, naming this replica.
    pub user_agent: String,
    /// Which entries reach which cluster, by the cluster's identity.
    pub reached: identity::Registry,
    /// Whether writes are allowed now (always, unless leader election fences them).
    pub fence: crate::agent::leader::Fence,
    /// Named when a cluster is added to the status report, for the rollout driver's next
    /// tick to fill in its wave ([`RolloutDriver::joined`]).
    ///
    /// [`RolloutDriver::joined`]: crate::agent::driver::RolloutDriver::joined
    pub joined: Arc<crate::agent::driver::Joined>,
}

impl Shared {
    /// The same, its writes fenced by `fence` (a shard's, under `--shards`).
    pub fn fenced_by(&self, fence: crate::agent::leader::Fence) -> Shared {
        Shared {
            metrics: self.metrics.clone(),
            status: self.status.clone(),
            semaphore: self.semaphore.clone(),
            credentials_dir: self.credentials_dir.clone(),
            kubeconfigs: self.kubeconfigs.clone(),
            cluster_api_kubeconfigs: self.cluster_api_kubeconfigs.clone(),
            dry_run: self.dry_run,
            allow_mass_prune: self.allow_mass_prune,
            resync: self.resync,
            recheck: self.recheck,
            call_timeout: self.call_timeout,
            reports: self.reports.clone(),
            identity: self.identity.clone(),
            user_agent: self.user_agent.clone(),
            reached: self.reached.clone(),
            fence,
            joined: self.joined.clone(),
        }
    }

    pub fn update_status(&self, cluster: &str, f: impl FnOnce(&mut ClusterStatus)) {
        if let Ok(mut status) = self.status.write() {
            let joined = status.clusters.upsert(cluster, |s| {
                f(s);
                s.settle(|| jiff::Timestamp::now().to_string());
            });
            if joined {
                // Its wave and pending revision are the rollout's to fill in.
                self.joined.push(cluster);
            }
        }
    }

    /// A cluster done with: out of the status and the metrics.
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut status) = self.status.write() {
            status.clusters.remove(cluster);
        }
        self.metrics.forget_cluster(cluster);
    }
}
