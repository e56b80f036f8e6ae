//! How the simulated controllers write: through the same verbs as clients (so every write
//! bumps resourceVersion, tracks field ownership and reaches watches), read-modify-write
//! retried on conflicts, plus the condition and finalizer edits they share.

use serde_json::{json, Value};

use crate::cluster::{ClusterState, Shared};
use crate::objects;
use crate::store::Key;
use crate::verbs::{self, Target, Validation, WriteOpts};

/// A controller's write: never a dry run, never validated, never forced.
pub(super) fn opts(manager: &str) -> WriteOpts {
    WriteOpts {
        dry_run: false,
        manager: manager.into(),
        validation: Validation::Ignore,
        force: false,
    }
}

pub(super) fn target<'a>(sh: &Shared, k: &'a Key, sub: Option<&'a str>) -> Target<'a> {
    Target {
        res: k.res,
        namespace: sh.registry[k.res]
            .namespaced
            .then_some(k.namespace.as_str()),
        name: &k.name,
        subresource: sub,
    }
}

/// Read-modify-write with optimistic concurrency, retried on conflicts.
pub(super) fn mutate(
    sh: &Shared,
    cl: &ClusterState,
    k: &Key,
    sub: Option<&str>,
    manager: &str,
    f: impl Fn(&mut Value) -> bool,
) {
    for _ in 0..5 {
        let Some(live) = cl.store().get(k) else {
            return;
        };
        let mut new = (*live).clone();
        if !f(&mut new) {
            return;
        }
        match verbs::update(sh, cl, &target(sh, k, sub), new, &opts(manager)) {
            Err(e) if e.code == 409 => continue,
            Err(e) => {
                tracing::warn!(cluster = %cl.name, object = %k.name, reason = %e.reason, "simulated controller write failed");
                return;
            }
            Ok(_) => return,
        }
    }
}

pub(super) fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: Option<&str>,
    generation: i64,
) -> Value {
    let mut c = json!({"type": type_, "status": status, "reason": reason,
        "lastTransitionTime": objects::now(), "observedGeneration": generation});
    if let Some(m) = message {
        c["message"] = Value::String(m.into());
    }
    c
}

/// Sets conditions by type, keeping lastTransitionTime when the status did not change.
pub(super) fn set_conditions(obj: &mut Value, new: Vec<Value>) {
    let old = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = old
        .iter()
        .filter(|c| !new.iter().any(|n| n["type"] == c["type"]))
        .cloned()
        .collect();
    for mut n in new {
        if let Some(prev) = old
            .iter()
            .find(|c| c["type"] == n["type"] && c["status"] == n["status"])
        {
            n["lastTransitionTime"] = prev["lastTransitionTime"].clone();
        }
        out.push(n);
    }
    out.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    obj["status"]["conditions"] = Value::Array(out);
}

pub(super) fn has_finalizer(obj: &Value, f: &str) -> bool {
    objects::finalizers(obj).iter().any(|x| x == f)
}

pub(super) fn add_finalizer(obj: &mut Value, f: &str) -> bool {
    let mut fins = objects::finalizers(obj);
    if fins.iter().any(|x| x == f) {
        return false;
    }
    fins.push(f.into());
    objects::meta_mut(obj).insert("finalizers".into(), json!(fins));
    true
}

pub(super) fn remove_finalizer(obj: &mut Value, f: &str) -> bool {
    let fins = objects::finalizers(obj);
    if !fins.iter().any(|x| x == f) {
        return false;
    }
    let rest: Vec<String> = fins.into_iter().filter(|x| x != f).collect();
    objects::meta_mut(obj).insert("finalizers".into(), json!(rest));
    true
}
