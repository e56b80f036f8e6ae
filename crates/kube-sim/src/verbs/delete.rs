//! Deletion: preconditions, Crossplane Usage refusals (kept for replay), finalizers and
//! foreground propagation marking the object instead of removing it, and namespaces
//! going to `Terminating`.

use serde_json::{json, Value};

use super::{subject, target_key, DeleteOpts, Reply, Target};
use crate::cluster::{ClusterState, Replay, Shared};
use crate::objects::{self, meta_str};
use crate::status::ApiError;
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
    if o.propagation.as_deref() == Some("Foreground")
        && r.kind != "Namespace"
        && !objects::is_deleting(&old)
    {
        finalizers.push("foregroundDeletion".into());
    }
    if r.kind == "Namespace" || !finalizers.is_empty() {
        if objects::is_deleting(&old) {
            return Ok(Reply::ok(200, (*old).clone()));
        }
        let mut new = (*old).clone();
        let m = objects::meta_mut(&mut new);
        m.insert("deletionTimestamp".into(), Value::String(objects::now()));
        m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
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
    Ok(Reply::ok(200, (*last).clone()))
}
