//! kube-controller-manager's garbage collector: dependents of a deleted object go too
//! (background propagation), an owner deleted in the foreground goes once its dependents
//! are gone, an owner deleted with `propagationPolicy=Orphan` goes once its dependents no
//! longer name it, and dependents whose owners all went while it was not running are
//! found when it starts.

use std::collections::HashSet;

use serde_json::Value;

use super::write::{mutate, remove_finalizer, target};
use crate::cluster::{ClusterState, Shared};
use crate::objects::{self, meta_str};
use crate::store::Key;
use crate::verbs::{self, DeleteOpts};

const MANAGER: &str = "kube-controller-manager";
use crate::verbs::{FOREGROUND, ORPHAN};

/// Background propagation: dependents of a deleted object go too.
pub(super) fn collect_dependents(sh: &Shared, cl: &ClusterState, deleted: &Value) {
    let Some(uid) = meta_str(deleted, "uid") else {
        return;
    };
    let dependents: Vec<Key> = cl
        .store()
        .all()
        .filter(|(_, o)| owned_by(o, uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in dependents {
        let _ = verbs::delete(sh, cl, &target(sh, &k, None), &DeleteOpts::default());
    }
    finish_foreground(sh, cl);
}

/// Dependents none of whose owners exist any more, as the garbage collector finds them
/// when it starts (an owner that went while it was not running).
pub(super) fn collect_orphans(sh: &Shared, cl: &ClusterState) {
    let orphans: Vec<Key> = {
        let store = cl.store();
        let uids: HashSet<&str> = store
            .all()
            .filter_map(|(_, o)| meta_str(o, "uid"))
            .collect();
        store
            .all()
            .filter(|(_, o)| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        !refs.is_empty()
                            && refs
                                .iter()
                                .all(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect()
    };
    for k in orphans {
        let _ = verbs::delete(sh, cl, &target(sh, &k, None), &DeleteOpts::default());
    }
}

/// Foreground deletion: an owner waiting on `foregroundDeletion` finishes once no
/// dependents remain; it is checked whenever something goes away.
pub(super) fn finish_foreground(sh: &Shared, cl: &ClusterState) {
    let waiting: Vec<Key> = cl
        .store()
        .all()
        .filter(|(_, o)| {
            objects::is_deleting(o) && objects::finalizers(o).iter().any(|f| f == FOREGROUND)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in waiting {
        let uid = cl
            .store()
            .get(&k)
            .and_then(|o| meta_str(&o, "uid").map(String::from))
            .unwrap_or_default();
        let has_dependents = cl.store().all().any(|(_, o)| owned_by(o, &uid));
        if !has_dependents {
            mutate(sh, cl, &k, None, MANAGER, |o| {
                remove_finalizer(o, FOREGROUND)
            });
        }
    }
}

/// Whether one of the object's owner references names `uid`.
fn owned_by(o: &Value, uid: &str) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// Orphan propagation: the owner references naming a deleting owner with the `orphan`
/// finalizer are removed from its dependents, then the finalizer, which lets it go.
pub(super) fn orphan_dependents(sh: &Shared, cl: &ClusterState, k: &Key, owner: &Value) {
    if !objects::is_deleting(owner) || !objects::finalizers(owner).iter().any(|f| f == ORPHAN) {
        return;
    }
    let Some(uid) = meta_str(owner, "uid").map(String::from) else {
        return;
    };
    let dependents: Vec<Key> = cl
        .store()
        .all()
        .filter(|(_, o)| owned_by(o, &uid))
        .map(|(k, _)| k.clone())
        .collect();
    for d in dependents {
        mutate(sh, cl, &d, None, MANAGER, |o| {
            let Some(refs) = o
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            else {
                return false;
            };
            refs.retain(|r| r["uid"] != uid.as_str());
            if refs.is_empty() {
                objects::meta_mut(o).remove("ownerReferences");
            }
            true
        });
    }
    mutate(sh, cl, k, None, MANAGER, |o| remove_finalizer(o, ORPHAN));
}

/// [`orphan_dependents`] of every deleting owner, for a collector that starts.
pub(super) fn orphan_all(sh: &Shared, cl: &ClusterState) {
    let owners: Vec<(Key, std::sync::Arc<Value>)> = cl
        .store()
        .all()
        .filter(|(_, o)| objects::is_deleting(o))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (k, o) in owners {
        orphan_dependents(sh, cl, &k, &o);
    }
}
