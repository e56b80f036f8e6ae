//! Deletion: preconditions, Crossplane Usage refusals (kept for replay), finalizers and
//! foreground or orphan propagation marking the object instead of removing it (its
//! generation incremented, as the registry's BeforeDelete does), namespaces going to
//! `Terminating`, and the `Status` a delete that removed its object at once answers with.

use serde_json::{json, Value};

use super::{subject, target_key, DeleteOpts, Reply, Target};
use crate::cluster::{ClusterState, Replay, Shared};
use crate::objects::{self, meta_str};
use crate::status::{self, ApiError};
use crate::usage;

pub fn delete(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    o: &DeleteOpts,
) -> Result<Reply, ApiError> {
    let k = target_key(t);
    let mut store = cl.store();
    let old = store
        .get(&k)
        .ok_or_else(|| ApiError::not_found(subject(sh, t.res, t.name)))?;
    if let Some(uid) = &o.uid {
        if Some(uid.as_str()) != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                subject(sh, t.res, t.name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(rv) = &o.resource_version {
        if Some(rv.as_str()) != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(subject(sh, t.res, t.name), &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old, "resourceVersion").unwrap_or_default()
            )));
        }
    }
    if let Some(refusal) = usage::refusal(sh, &store, &k, &old) {
        if refusal.replay && !o.dry_run {
            let propagation = o.propagation.clone().unwrap_or_else(|| "Background".into());
            cl.replays().insert(
                refusal.usage.clone(),
                Replay {
                    target: k.clone(),
                    propagation,
                },
            );
        }
        return Err(refusal.error);
    }
    let r = &sh.registry[t.res];
    if o.dry_run {
        return Ok(Reply::ok(200, (*old).clone()));
    }
    let mut finalizers = objects::finalizers(&old);
    let gc_finalizer = match o.propagation.as_deref() {
        Some("Foreground") => Some(FOREGROUND),
        Some("Orphan") => Some(ORPHAN),
        _ => None,
    };
    if let Some(f) = gc_finalizer {
        if r.kind != "Namespace"
            && !objects::is_deleting(&old)
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(f.into());
        }
    }
    if r.kind == "Namespace" || !finalizers.is_empty() {
        if objects::is_deleting(&old) {
            return Ok(Reply::ok(200, (*old).clone()));
        }
        let mut new = (*old).clone();
        let generation = new["metadata"]["generation"].as_i64().unwrap_or(0);
        let m = objects::meta_mut(&mut new);
        m.insert("deletionTimestamp".into(), Value::String(objects::now()));
        m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
        // The registry's BeforeDelete: a graceful deletion is a change of the object.
        if generation > 0 {
            m.insert("generation".into(), Value::from(generation + 1));
        }
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), json!(finalizers));
        }
        if r.kind == "Namespace" {
            new["status"]["phase"] = Value::String("Terminating".into());
        }
        let stored = store.put(k, new);
        return Ok(Reply::ok(200, (*stored).clone()));
    }
    let last = store.remove(&k).unwrap_or(old);
    // Only the registries that set ReturnDeletedObject (pods among what is served here)
    // answer with the object; every other one, custom resources included, with a Status.
    if r.is_builtin() && r.kind == "Pod" {
        return Ok(Reply::ok(200, (*last).clone()));
    }
    Ok(Reply::ok(
        200,
        status::success(
            &r.group,
            &r.plural,
            t.name,
            meta_str(&last, "uid").unwrap_or_default(),
        ),
    ))
}

/// The finalizers the garbage collector honours for `propagationPolicy`.
pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
