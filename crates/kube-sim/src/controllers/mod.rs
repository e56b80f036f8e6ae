//! The simulated controllers of one cluster, one module each, run by one task per used
//! cluster from the cluster's change events. They write through the same verbs as
//! clients (`write`), so their writes are versioned, owned and watched like any other.
//!
//! - `release`: provider-helm installs and upgrades Releases after `ready_after`
//!   (creating the operator Deployments) and uninstalls deleted ones;
//! - `usage`: Crossplane's Usage controller, and the deletions Usages refused, replayed;
//! - `garbage_collector`: owner-reference garbage collection (background, foreground,
//!   orphans);
//! - `namespace`: namespace termination.
//!
//! What runs when (`handle`): a change event goes to the controller of its kind; a
//! deletion also lets Usages waiting on the deleted object finish and collects its
//! dependents; every event ends with a namespace termination pass. When the event channel
//! lagged or was replaced, the Releases are resynced. A cluster restored from a state file
//! starts with a pass of every controller ([`resume`]).

mod garbage_collector;
mod namespace;
mod release;
mod usage;
mod write;

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::cluster::{ClusterState, Shared};
use crate::store::{Event, EventType, Key};

pub use release::HELM_FINALIZER;
pub use usage::USAGE_FINALIZER;

/// The controllers of a new cluster: they follow its change events.
pub fn spawn(sh: Arc<Shared>, cl: Arc<ClusterState>) {
    run(sh, cl, false);
}

/// The controllers of a cluster restored from a state file: like controllers restarted
/// after an outage, they first reconcile everything there is (a Release that was still
/// installing, a Usage or a namespace mid-deletion), then follow the change events.
pub fn resume(sh: Arc<Shared>, cl: Arc<ClusterState>) {
    run(sh, cl, true);
}

fn run(sh: Arc<Shared>, cl: Arc<ClusterState>, resuming: bool) {
    let mut rx = cl.store().subscribe();
    tokio::spawn(async move {
        let mut scheduled = release::Scheduled::new();
        if resuming {
            release::resync(&sh, &cl, &mut scheduled);
            usage::reconcile_all(&sh, &cl);
            garbage_collector::collect_orphans(&sh, &cl);
            garbage_collector::finish_foreground(&sh, &cl);
            garbage_collector::orphan_all(&sh, &cl);
            namespace::terminate(&sh, &cl);
        }
        loop {
            match rx.recv().await {
                Ok(e) => handle(&sh, &cl, &e, &mut scheduled),
                Err(RecvError::Lagged(_)) => release::resync(&sh, &cl, &mut scheduled),
                // The channel is replaced when watches are expired: resubscribe.
                Err(RecvError::Closed) => {
                    rx = cl.store().subscribe();
                    release::resync(&sh, &cl, &mut scheduled);
                }
            }
        }
    });
}

fn kind_of<'a>(sh: &'a Shared, k: &Key) -> (&'a str, &'a str) {
    let r = &sh.registry[k.res];
    (r.group.as_str(), r.kind.as_str())
}

/// One change event, through every controller it concerns.
fn handle(sh: &Arc<Shared>, cl: &Arc<ClusterState>, e: &Event, scheduled: &mut release::Scheduled) {
    match (kind_of(sh, &e.key), e.kind) {
        (("helm.m.crossplane.io", "Release"), EventType::Deleted) => {
            scheduled.remove(&e.key);
        }
        (("helm.m.crossplane.io", "Release"), _) => {
            release::reconcile(sh, cl, &e.key, &e.object, scheduled)
        }
        (("protection.crossplane.io", "Usage"), EventType::Deleted) => {
            usage::replay(sh, cl, &e.key)
        }
        (("protection.crossplane.io", "Usage"), _) => usage::reconcile(sh, cl, &e.key, &e.object),
        (("apiextensions.k8s.io", "CustomResourceDefinition"), EventType::Deleted) => {
            remove_instances(sh, cl, &e.key.name)
        }
        _ => {}
    }
    if e.kind == EventType::Deleted {
        usage::finish_deletions(sh, cl);
        garbage_collector::collect_dependents(sh, cl, &e.object);
    } else {
        garbage_collector::orphan_dependents(sh, cl, &e.key, &e.object);
    }
    namespace::terminate(sh, cl);
}

/// A deleted CRD takes its objects with it, as the API server's CRD cleanup does; they
/// go without waiting on finalizers, since no controller of a kind no longer served could
/// remove them.
fn remove_instances(sh: &Shared, cl: &ClusterState, crd: &str) {
    let Some(res) = sh.find_crd(crd) else {
        return;
    };
    let mut store = cl.store();
    let keys: Vec<Key> = store
        .list(res, None, None)
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        store.remove(&k);
    }
}
