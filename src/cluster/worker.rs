//! One cluster's task: connect from the kubeconfig and run a [`session`] on the connection,
//! starting over when the cluster's entry or its kubeconfig changes, and backing off
//! exponentially (with jitter) when it cannot connect.

use std::sync::Arc;

use tokio::sync::watch;

use super::pass::Memory;
use super::session::{self, End};
use super::{kubeconfig, Assignment, Shared};
use crate::error_chain;
use crate::metrics::ErrorReason;
use fleet_core::reconcile::Backoff;

/// Runs until `stop` turns true, the agent drops the cluster's assignment, or the cluster
/// left the fleet and what it owned there is pruned or released.
pub async fn run(
    name: String,
    shared: Arc<Shared>,
    mut assignment: watch::Receiver<Assignment>,
    mut stop: watch::Receiver<bool>,
) {
    shared.metrics.know_cluster(&name);
    let backoff = Backoff::default();
    let mut attempt = 0u32;
    let mut memory = Memory::default();
    // The entry as last seen: a cluster that left the fleet is still reached through it.
    let mut entry = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let current = assignment.borrow().clone();
        entry = current.cluster(&name).cloned().or(entry);
        let Some(cluster) = entry.clone() else {
            return;
        };
        if current.cluster(&name).is_none() && !current.leaving_prunes() {
            tracing::info!(cluster = %name, "cluster left the fleet; its objects are left in place (spec.prune.removedClusters: orphan)");
            shared.forget(&name);
            return;
        }
        let leaving = current.cluster(&name).is_none();
        shared.update_status(&name, |s| s.leaving = leaving);
        let source = kubeconfig::Source::of(
            &shared.credentials_dir,
            shared.cluster_api_kubeconfigs.as_ref(),
            &cluster,
        );
        let connected = match source {
            Ok(source) => {
                // Told of every change from here on, so none between the read and the
                // session is missed.
                let changes = source.changes(&shared.kubeconfigs).subscribe();
                // Boxed: made once per connection, and the task holds its largest future.
                Box::pin(kubeconfig::client(
                    &source,
                    &cluster,
                    kubeconfig::insecure_allowed(),
                    &shared.user_agent,
                ))
                .await
                .map(|built| session::Connection {
                    client: built.client,
                    kubeconfig: source,
                    print: Some(built.print),
                    changes,
                })
            }
            Err(e) => Err(e),
        };
        let end = match connected {
            Ok(connection) => {
                session::run(
                    &name,
                    &cluster,
                    &shared,
                    connection,
                    &mut assignment,
                    &mut stop,
                    &mut memory,
                )
                .await
            }
            Err(e) => {
                let e = error_chain::chain(&e);
                tracing::warn!(cluster = %name, error = %e, "cannot build client");
                shared.metrics.count_error(&name, ErrorReason::Kubeconfig);
                shared.metrics.set_reachable(&name, false);
                let claims = current.newest.fleet.claims_of(&name);
                shared.metrics.record_unobserved(&name, claims);
                shared.update_status(&name, |s| {
                    s.reachable = false;
                    s.last_error = Some(e);
                });
                End::Failed
            }
        };
        match end {
            End::Stop => return,
            End::Left => {
                tracing::info!(cluster = %name, "cluster left the fleet and nothing of the fleet's is left on it");
                shared.forget(&name);
                return;
            }
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
