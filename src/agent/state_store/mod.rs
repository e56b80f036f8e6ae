//! Where the rollout state is kept: on disk (`--state-dir`) for a single agent, or, under
//! leader election, in ConfigMaps on the management cluster, so that the replica that
//! leads next resumes the rollout where it stood, an operator's halt included.
//!
//! The driver decides in memory and hands every change to a [`Keeper`]; a keeper that
//! talks to the network does the writing on a task of its own. What was kept is read back
//! as [`Loaded`] when a term of leading begins.

pub mod codec;
pub mod config_maps;
pub mod shard_health;
pub mod shard_status;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use fleet_core::fleetdir::FileTree;
use fleet_core::rollout::store::Store;
use fleet_core::rollout::State;

/// What was kept: the state, and the files of each revision it names (or why they could
/// not be read back).
#[derive(Debug, Default)]
pub struct Loaded {
    pub state: State,
    pub revisions: BTreeMap<String, Result<FileTree, String>>,
}

/// Keeps what the driver decides. Never blocks: a failure is logged (and, for the
/// ConfigMaps, retried), since the driver's decisions stand in memory either way.
pub trait Keeper: Send + Sync {
    fn save(&self, state: &State);
    /// Once per revision; a revision's files never change.
    fn save_revision(&self, revision: &str, tree: &FileTree);
    /// Forgets the revisions not in `keep`.
    fn retain(&self, keep: &BTreeSet<String>);
    /// The fleet's name, for the inventory label of what is kept.
    fn fleet_named(&self, _name: &str) {}
    /// Resolves once every save asked for so far is kept (true), or after a while without
    /// (false): what an operator is answered after a halt depends on it.
    fn settled(&self) -> Settled {
        Box::pin(async { true })
    }
}

pub type Settled = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// The state directory of a single agent.
pub struct Disk(pub Store);

impl Disk {
    pub fn load(&self) -> Result<Loaded, fleet_core::rollout::store::Error> {
        let state = self.0.load()?;
        let revisions = state
            .revisions()
            .into_iter()
            .map(|r| {
                let tree = self
                    .0
                    .load_revision(&r)
                    .map_err(|e| crate::error_chain::chain(&e));
                (r, tree)
            })
            .collect();
        tracing::info!(dir = %self.0.dir().display(), "rollout state loaded");
        Ok(Loaded { state, revisions })
    }
}

impl Keeper for Disk {
    fn save(&self, state: &State) {
        if let Err(e) = self.0.save(state) {
            tracing::error!(error = %crate::error_chain::chain(&e), "cannot save the rollout state");
        }
    }

    fn save_revision(&self, revision: &str, tree: &FileTree) {
        if let Err(e) = self.0.save_revision(revision, tree) {
            tracing::error!(error = %crate::error_chain::chain(&e), "cannot keep the revision's files for the rollout");
        }
    }

    fn retain(&self, keep: &BTreeSet<String>) {
        self.0.retain_revisions(keep);
    }
}
