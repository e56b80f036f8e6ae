//! The I/O edge towards the clusters: one worker task per `Cluster` file, each with its own
//! client, watches and backoff, so a down or slow cluster never delays the others. The
//! decisions are [`crate::reconcile`]'s; a worker only feeds it live state and carries out
//! the actions it returns.

pub mod apply;
pub mod kubeconfig;
pub mod list;
pub mod transport;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::fleetdir::LoadedFleet;
use crate::metrics::Metrics;
use crate::status::StatusReport;

/// A revision that passed validation and the fleet-wide mass-prune guard.
#[derive(Debug)]
pub struct Accepted {
    pub revision: String,
    pub fleet: LoadedFleet,
    /// Whether an earlier revision was accepted in this process, so the fleet-wide guard
    /// compared against it; when not, each cluster guards its first prune itself.
    pub has_baseline: bool,
}

/// What every worker shares.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub status: Arc<RwLock<StatusReport>>,
    /// Bounds the clusters being written to at once across the fleet.
    pub semaphore: Arc<Semaphore>,
    pub credentials_dir: PathBuf,
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// How often a worker re-checks its kubeconfig and replays a pass (no writes when
    /// nothing changed).
    pub resync: Duration,
    /// Bound on every API call.
    pub call_timeout: Duration,
    /// Which revision each cluster is reconciled to, by rollout wave.
    pub rollouts: Arc<crate::agent::rollout::Rollouts>,
}
