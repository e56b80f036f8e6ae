//! One cluster's task: connect from the kubeconfig and run a [`session`] on the connection,
//! starting over when the cluster's entry or its kubeconfig changes, and backing off
//! exponentially (with jitter) when it cannot connect.

use std::sync::Arc;

use tokio::sync::watch;

use super::pass::Memory;
use super::session::{self, End};
use super::{kubeconfig, Assignment, Shared};
use crate::metrics::ErrorReason;
use fleet_core::reconcile::Backoff;

/// Runs until `stop` turns true or the agent drops the cluster's assignment (the cluster
/// left the fleet).
pub async fn run(
    name: String,
    shared: Arc<Shared>,
    mut assignment: watch::Receiver<Assignment>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = Backoff::default();
    let mut attempt = 0u32;
    let mut memory = Memory::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let current = assignment.borrow().clone();
        let Some(cluster) = current.cluster(&name).cloned() else {
            return;
        };
        let connected = match kubeconfig::resolve(&shared.credentials_dir, &cluster) {
            Ok(path) => {
                let print = kubeconfig::fingerprint(&path);
                kubeconfig::client(&path, &cluster, kubeconfig::insecure_allowed())
                    .await
                    .map(|client| session::Connection {
                        client,
                        kubeconfig: path,
                        print,
                    })
            }
            Err(e) => Err(e),
        };
        let end = match connected {
            Ok(connection) => {
                session::run(
                    &name,
                    &shared,
                    connection,
                    &mut assignment,
                    &mut stop,
                    &mut memory,
                )
                .await
            }
            Err(e) => {
                tracing::warn!(cluster = %name, error = %e, "cannot build client");
                shared.metrics.count_error(&name, ErrorReason::Kubeconfig);
                shared.metrics.set_reachable(&name, false);
                let claims = current.newest.fleet.claims_of(&name);
                shared.metrics.record_unobserved(&name, claims);
                shared.update_status(&name, |s| {
                    s.reachable = false;
                    s.last_error = Some(e.to_string());
                });
                End::Failed
            }
        };
        match end {
            End::Stop => return,
            End::Reconnect => attempt = 0,
            End::Failed => {
                let delay = backoff.delay(attempt, fastrand::f64());
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                    changed = assignment.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}
