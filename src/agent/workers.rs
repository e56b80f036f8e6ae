//! The agent's cluster workers: one task per cluster of the newest revision, each sent its
//! assignment on a watch channel of its own. A cluster that left the fleet keeps its
//! worker until the worker has pruned what it owns there (or released it, when the fleet
//! says to orphan removed clusters); the worker then ends and takes the cluster out of the
//! status and the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::driver::RolloutDriver;
use crate::cluster::{worker, Accepted, Assignment, Shared};

/// A cluster's worker: its task, and where its assignment is sent.
struct Worker {
    assignment: watch::Sender<Assignment>,
    task: JoinHandle<()>,
}

pub struct Workers {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    by_cluster: BTreeMap<String, Worker>,
}

impl Workers {
    pub fn new(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Workers {
        Workers {
            shared,
            stop,
            by_cluster: BTreeMap::new(),
        }
    }

    /// One worker per cluster of `newest`, and the workers of clusters that left until they
    /// are done; clusters that came (or whose worker ended) get one.
    pub fn follow(&mut self, newest: &Arc<Accepted>, rollouts: &RolloutDriver) {
        let clusters = &newest.fleet.clusters;
        self.by_cluster
            .retain(|name, w| clusters.contains_key(name) || !w.task.is_finished());
        for name in clusters.keys() {
            if self
                .by_cluster
                .get(name)
                .is_none_or(|w| w.task.is_finished())
            {
                let (tx, rx) = watch::channel(Assignment {
                    newest: newest.clone(),
                    given: rollouts.given(name),
                });
                let task = worker::run(name.clone(), self.shared.clone(), rx, self.stop.clone());
                let worker = Worker {
                    assignment: tx,
                    task: tokio::spawn(task),
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
    }

    /// Waits for every worker to finish its action in flight (they were told to stop).
    pub async fn join(self, grace: Duration) {
        for (_, worker) in self.by_cluster {
            let _ = tokio::time::timeout(grace, worker.task).await;
        }
    }
}
