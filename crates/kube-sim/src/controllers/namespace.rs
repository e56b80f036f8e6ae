//! The namespace controller: a terminating namespace deletes its contents, reports how far
//! it got in the conditions kube-controller-manager's namespace deleter writes
//! (`NamespaceDeletionDiscoveryFailure`, `NamespaceDeletionGroupVersionParsingFailure`,
//! `NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`), then goes once the contents are gone.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cluster::{key, ClusterState, Shared};
use crate::objects;
use crate::store::Key;
use crate::verbs::{self, DeleteOpts};

use super::write::{mutate, target};

const MANAGER: &str = "kube-controller-manager";

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
        for (k, deleting, _) in contents(sh, cl, &ns) {
            if !deleting {
                let _ = verbs::delete(sh, cl, &target(sh, &k, None), &DeleteOpts::default());
            }
        }
        let left = contents(sh, cl, &ns);
        if left.is_empty() {
            cl.store().remove(&key(ns_res, "", &ns));
            continue;
        }
        let conditions = conditions(sh, &left);
        mutate(
            sh,
            cl,
            &key(ns_res, "", &ns),
            Some("status"),
            MANAGER,
            |o| {
                let before = o["status"]["conditions"].clone();
                set(o, &conditions);
                o["status"]["conditions"] != before
            },
        );
    }
}

/// The namespaced objects in `ns`: whether each is being deleted, and its finalizers.
fn contents(sh: &Shared, cl: &ClusterState, ns: &str) -> Vec<(Key, bool, Vec<String>)> {
    cl.store()
        .all()
        .filter(|(k, _)| k.namespace == ns && sh.registry[k.res].namespaced)
        .map(|(k, o)| (k.clone(), objects::is_deleting(o), objects::finalizers(o)))
        .collect()
}

/// The deleter's conditions for what is left in the namespace: every discovery and
/// deletion succeeded, and the resources and finalizers that remain, counted.
fn conditions(sh: &Shared, contents: &[(Key, bool, Vec<String>)]) -> Vec<Value> {
    let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_finalizer: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _, finalizers) in contents {
        let r = &sh.registry[k.res];
        let resource = if r.group.is_empty() {
            r.plural.clone()
        } else {
            format!("{}.{}", r.plural, r.group)
        };
        *by_resource.entry(resource).or_default() += 1;
        for f in finalizers {
            *by_finalizer.entry(f.clone()).or_default() += 1;
        }
    }
    let content = by_resource
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    let finalizers = by_finalizer
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    let c = |t: &str, status: &str, reason: &str, message: String| json!({"type": t, "status": status, "reason": reason, "message": message});
    vec![
        c(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        c(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        c(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
        ),
        c(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {content}"),
        ),
        if finalizers.is_empty() {
            c(
                "NamespaceFinalizersRemaining",
                "False",
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            c(
                "NamespaceFinalizersRemaining",
                "True",
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {finalizers}"),
            )
        },
    ]
}

/// Sets the conditions in the deleter's order, each keeping its lastTransitionTime while
/// its status does not change; a change of message alone is written, not a transition.
fn set(ns: &mut Value, new: &[Value]) {
    let old = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = objects::now();
    let out: Vec<Value> = new
        .iter()
        .map(|n| {
            let mut n = n.clone();
            let time = old
                .iter()
                .find(|c| c["type"] == n["type"] && c["status"] == n["status"])
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or_else(|| Value::String(now.clone()));
            n["lastTransitionTime"] = time;
            n
        })
        .collect();
    if !ns["status"].is_object() {
        ns["status"] = json!({});
    }
    ns["status"]["conditions"] = Value::Array(out);
}
