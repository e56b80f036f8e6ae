//! Crossplane's Usage controller: it adds its finalizer and marks a Usage `Ready` (with
//! an Event); a Usage being deleted keeps its finalizer while its `by` object exists; and
//! once a Usage is gone, the deletion it refused with `replayDeletion` is replayed. The
//! refusal itself is admission, in [`crate::usage`].

use serde_json::Value;

use super::write::{add_finalizer, condition, generation, has_finalizer, mutate};
use super::write::{remove_finalizer, set_conditions};
use crate::cluster::{ClusterState, Shared};
use crate::events::{self, Note};
use crate::objects;
use crate::store::Key;
use crate::verbs::{self, DeleteOpts, Target};

pub const USAGE_FINALIZER: &str = "usage.apiextensions.crossplane.io";
const CROSSPLANE_MANAGER: &str = "crossplane";
/// The Event source: the recorder name Crossplane's Usage controller passes to
/// `GetEventRecorderFor`.
const USAGE_RECORDER: &str = "usage/usage.protection.crossplane.io";

pub(super) fn reconcile(sh: &Shared, cl: &ClusterState, k: &Key, obj: &Value) {
    if objects::is_deleting(obj) {
        if !crate::usage::by_exists(sh, &cl.store(), k, obj) {
            mutate(sh, cl, k, None, CROSSPLANE_MANAGER, |o| {
                remove_finalizer(o, USAGE_FINALIZER)
            });
        }
        return;
    }
    if !has_finalizer(obj, USAGE_FINALIZER) {
        mutate(sh, cl, k, None, CROSSPLANE_MANAGER, |o| {
            add_finalizer(o, USAGE_FINALIZER)
        });
        return;
    }
    let ready = obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    if !ready {
        let g = generation(obj);
        mutate(sh, cl, k, Some("status"), CROSSPLANE_MANAGER, |o| {
            set_conditions(o, vec![condition("Ready", "True", "Available", None, g)]);
            true
        });
        // Bound first: the store guard must be released before recording writes.
        let live = cl.store().get(k);
        if let Some(u) = live {
            let note = Note {
                type_: events::Type::Normal,
                reason: "UsageConfigured",
                message: "Usage configured successfully.",
                component: USAGE_RECORDER,
            };
            events::record(sh, cl, &u, &note);
        }
    }
}

/// Usages being deleted wait for their `by` object; finish those whose `by` is gone.
pub(super) fn finish_deletions(sh: &Shared, cl: &ClusterState) {
    for_each_usage(sh, cl, objects::is_deleting);
}

/// Every Usage, as the controller sees them when it starts.
pub(super) fn reconcile_all(sh: &Shared, cl: &ClusterState) {
    for_each_usage(sh, cl, |_| true);
}

fn for_each_usage(sh: &Shared, cl: &ClusterState, select: impl Fn(&Value) -> bool) {
    let Some(res) = sh.find("protection.crossplane.io", "v1beta1", "usages") else {
        return;
    };
    let selected: Vec<(Key, Value)> = cl
        .store()
        .list(res, None, None)
        .filter(|(_, u)| select(u))
        .map(|(k, u)| (k.clone(), (**u).clone()))
        .collect();
    for (k, u) in selected {
        reconcile(sh, cl, &k, &u);
    }
}

/// The deletion the Usage at `usage_key` refused, replayed now that the Usage is gone.
pub(super) fn replay(sh: &Shared, cl: &ClusterState, usage_key: &Key) {
    let Some(r) = cl.replays().remove(usage_key) else {
        return;
    };
    let t = Target {
        res: r.target.res,
        namespace: sh.registry[r.target.res]
            .namespaced
            .then_some(r.target.namespace.as_str()),
        name: &r.target.name,
        subresource: None,
    };
    let o = DeleteOpts {
        propagation: Some(r.propagation),
        ..Default::default()
    };
    if let Err(e) = verbs::delete(sh, cl, &t, &o) {
        tracing::debug!(cluster = %cl.name, reason = %e.reason, "replayed deletion not done");
    }
}
