//! The namespace controller: a terminating namespace deletes its contents, then goes
//! once they are gone.

use crate::cluster::{key, ClusterState, Shared};
use crate::objects;
use crate::store::Key;
use crate::verbs::{self, DeleteOpts};

use super::write::target;

/// One pass over every terminating namespace.
pub(super) fn terminate(sh: &Shared, cl: &ClusterState) {
    let Some(ns_res) = sh.find("", "v1", "namespaces") else {
        return;
    };
    let terminating: Vec<String> = cl
        .store()
        .list(ns_res, None, None)
        .filter(|(_, o)| objects::is_deleting(o))
        .map(|(k, _)| k.name.clone())
        .collect();
    for ns in terminating {
        let contents: Vec<(Key, bool)> = cl
            .store()
            .all()
            .filter(|(k, _)| k.namespace == ns && sh.registry[k.res].namespaced)
            .map(|(k, o)| (k.clone(), objects::is_deleting(o)))
            .collect();
        if contents.is_empty() {
            cl.store().remove(&key(ns_res, "", &ns));
            continue;
        }
        for (k, deleting) in contents {
            if !deleting {
                let _ = verbs::delete(sh, cl, &target(sh, &k, None), &DeleteOpts::default());
            }
        }
    }
}
