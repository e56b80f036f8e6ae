//! The agent's cluster workers: one task per cluster of the newest revision, each sent its
//! assignment on a watch channel of its own. A cluster that left the fleet keeps its
//! worker until the worker has pruned what it owns there (or released it, when the fleet
//! says to orphan removed clusters); the worker then ends and takes the cluster out of the
//! status and the metrics.
//!
//! Under `--shards N` a replica runs the workers of the clusters in the shards it holds
//! only, each writing through its shard's fence; when a shard is given up or lost, the
//! workers of its clusters are ended and their clusters leave this replica's status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::driver::RolloutDriver;
use super::lanes::Lanes;
use super::leader::shards::Held;
use super::leader::Fence;
use crate::cluster::{worker, Accepted, Assignment, Shared};
use fleet_core::shard::shard_of;

/// A cluster's worker: its task, and where its assignment is sent.
struct Worker {
    assignment: watch::Sender<Assignment>,
    task: JoinHandle<()>,
}

pub struct Workers {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    by_cluster: BTreeMap<String, Worker>,
    sharding: Option<Sharding>,
    lanes: Lanes,
}

/// Which clusters a replica serves under `--shards`.
struct Sharding {
    /// What the workers of each shard share: its fence differs.
    by_shard: Vec<Arc<Shared>>,
    /// The shards held, each with the term it was taken in.
    held: Held,
}

impl Workers {
    pub fn new(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Workers {
        Workers {
            shared,
            stop,
            by_cluster: BTreeMap::new(),
            sharding: None,
            lanes: Lanes::start(),
        }
    }

    /// Serves only the clusters of the shards held (none until [`hold`](Workers::hold)),
    /// each shard's writes fenced by its own fence in `fences`.
    pub fn sharded(mut self, fences: &[Fence]) -> Workers {
        let by_shard = fences
            .iter()
            .map(|f| Arc::new(self.shared.fenced_by(f.clone())))
            .collect();
        self.sharding = Some(Sharding {
            by_shard,
            held: Held::new(),
        });
        self
    }

    /// Under sharding: how many shards there are, and the ones held.
    pub fn shards(&self) -> Option<(u32, BTreeSet<u32>)> {
        let sharding = self.sharding.as_ref()?;
        let count = u32::try_from(sharding.by_shard.len()).unwrap_or(u32::MAX);
        Some((count, sharding.held.keys().copied().collect()))
    }

    /// Whether this replica writes to `cluster`: always, unless sharded and its shard is
    /// not held.
    pub fn serves(&self, cluster: &str) -> bool {
        self.shared_for(cluster).is_some()
    }

    fn shared_for(&self, cluster: &str) -> Option<&Arc<Shared>> {
        let Some(sharding) = &self.sharding else {
            return Some(&self.shared);
        };
        let count = u32::try_from(sharding.by_shard.len()).unwrap_or(u32::MAX);
        let shard = shard_of(cluster, count);
        sharding
            .held
            .contains_key(&shard)
            .then(|| sharding.by_shard.get(shard as usize))
            .flatten()
    }

    /// The shards held are `held` now: the workers of clusters in shards no longer held,
    /// or held in a new term (lost and taken again: their workers may have been refused
    /// writes, and start afresh as after a leadership), are ended (their fence was closed)
    /// and their clusters leave the status and the metrics; [`follow`](Workers::follow)
    /// then starts the workers of the shards taken.
    pub async fn hold(&mut self, held: &Held) {
        let Some(sharding) = self.sharding.as_mut() else {
            return;
        };
        let count = u32::try_from(sharding.by_shard.len()).unwrap_or(u32::MAX);
        let before = std::mem::replace(&mut sharding.held, held.clone());
        let ended: BTreeSet<u32> = before
            .iter()
            .filter(|(shard, term)| held.get(shard) != Some(term))
            .map(|(shard, _)| *shard)
            .collect();
        let dropped: Vec<String> = self
            .by_cluster
            .keys()
            .filter(|name| ended.contains(&shard_of(name, count)) || !self.serves(name))
            .cloned()
            .collect();
        for name in dropped {
            if let Some(worker) = self.by_cluster.remove(&name) {
                worker.task.abort();
                let _ = worker.task.await;
            }
            self.shared.forget(&name);
        }
    }

    /// One worker per cluster of `newest`, and the workers of clusters that left until they
    /// are done; clusters that came (or whose worker ended) get one.
    pub fn follow(&mut self, newest: &Arc<Accepted>, rollouts: &RolloutDriver) {
        let clusters = &newest.fleet.clusters;
        self.by_cluster
            .retain(|name, w| clusters.contains_key(name) || !w.task.is_finished());
        for name in clusters.keys() {
            let Some(shared) = self.shared_for(name).cloned() else {
                continue;
            };
            if self
                .by_cluster
                .get(name)
                .is_none_or(|w| w.task.is_finished())
            {
                let (tx, rx) = watch::channel(Assignment {
                    newest: newest.clone(),
                    given: rollouts.given(name),
                    asked: rollouts.asked(),
                });
                let task = worker::run(name.clone(), shared, rx, self.stop.clone());
                let worker = Worker {
                    assignment: tx,
                    task: self.lanes.spawn(task),
                };
                self.by_cluster.insert(name.clone(), worker);
            }
        }
        self.assign(newest, rollouts);
    }

    /// Sends each worker its assignment, where it changed.
    pub fn assign(&self, newest: &Arc<Accepted>, rollouts: &RolloutDriver) {
        for (name, worker) in &self.by_cluster {
            let assignment = Assignment {
                newest: newest.clone(),
                given: rollouts.given(name),
                asked: rollouts.asked(),
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

    /// Ends every worker now, wherever it is (leadership lost: the fence refuses their
    /// writes already), and waits until they are gone.
    pub async fn abort(self) {
        for (_, worker) in self.by_cluster {
            worker.task.abort();
            let _ = worker.task.await;
        }
        self.lanes.close().await;
    }

    /// Waits for every worker to finish its action in flight (they were told to stop).
    pub async fn join(self, grace: Duration) {
        for (_, worker) in self.by_cluster {
            let _ = tokio::time::timeout(grace, worker.task).await;
        }
        self.lanes.close().await;
    }
}
