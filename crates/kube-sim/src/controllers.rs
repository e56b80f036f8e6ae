//! Simulated controllers, one task per used cluster, driven by the cluster's change events:
//! provider-helm installs and upgrades Releases after `ready_after` (creating the operator
//! Deployments), Crossplane's Usage controller, replayed deletions, namespace termination
//! and owner-reference garbage collection. They write through the same verbs as clients.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::cluster::{key, ClusterState, Shared};
use super::crds;
use super::events::{self, Note};
use super::objects::{self, meta_str};
use super::store::{Event, EventType, Key};
use super::usage;
use super::verbs::{self, DeleteOpts, Target, Validation, WriteOpts};

pub const HELM_FINALIZER: &str = "finalizer.managedresource.crossplane.io";
pub const USAGE_FINALIZER: &str = "usage.apiextensions.crossplane.io";
const HELM_MANAGER: &str = "provider-helm";
const CROSSPLANE_MANAGER: &str = "crossplane";
/// Event sources: the recorder names crossplane-runtime's managed reconciler and
/// Crossplane's Usage controller pass to `GetEventRecorderFor`.
const RELEASE_RECORDER: &str = "managed/release.helm.m.crossplane.io";
const USAGE_RECORDER: &str = "usage/usage.protection.crossplane.io";

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
        let mut scheduled: HashMap<Key, i64> = HashMap::new();
        if resuming {
            resync(&sh, &cl, &mut scheduled);
            reconcile_usages(&sh, &cl);
            collect_orphans(&sh, &cl);
            finish_foreground(&sh, &cl);
            terminate_namespaces(&sh, &cl);
        }
        loop {
            match rx.recv().await {
                Ok(e) => handle(&sh, &cl, &e, &mut scheduled),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    resync(&sh, &cl, &mut scheduled)
                }
                // The channel is replaced when watches are expired: resubscribe.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    rx = cl.store().subscribe();
                    resync(&sh, &cl, &mut scheduled);
                }
            }
        }
    });
}

fn opts(manager: &str) -> WriteOpts {
    WriteOpts {
        dry_run: false,
        manager: manager.into(),
        validation: Validation::Ignore,
        force: false,
    }
}

fn target<'a>(sh: &Shared, k: &'a Key, sub: Option<&'a str>) -> Target<'a> {
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
fn mutate(
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

fn condition(
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
fn set_conditions(obj: &mut Value, new: Vec<Value>) {
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

fn add_finalizer(obj: &mut Value, f: &str) -> bool {
    let mut fins = objects::finalizers(obj);
    if fins.iter().any(|x| x == f) {
        return false;
    }
    fins.push(f.into());
    objects::meta_mut(obj).insert("finalizers".into(), json!(fins));
    true
}

fn remove_finalizer(obj: &mut Value, f: &str) -> bool {
    let fins = objects::finalizers(obj);
    if !fins.iter().any(|x| x == f) {
        return false;
    }
    let rest: Vec<String> = fins.into_iter().filter(|x| x != f).collect();
    objects::meta_mut(obj).insert("finalizers".into(), json!(rest));
    true
}

fn kind_of<'a>(sh: &'a Shared, k: &Key) -> (&'a str, &'a str) {
    let r = &sh.registry[k.res];
    (r.group.as_str(), r.kind.as_str())
}

fn handle(sh: &Arc<Shared>, cl: &Arc<ClusterState>, e: &Event, scheduled: &mut HashMap<Key, i64>) {
    match (kind_of(sh, &e.key), e.kind) {
        (("helm.m.crossplane.io", "Release"), EventType::Deleted) => {
            scheduled.remove(&e.key);
        }
        (("helm.m.crossplane.io", "Release"), _) => release(sh, cl, &e.key, &e.object, scheduled),
        (("protection.crossplane.io", "Usage"), EventType::Deleted) => replay(sh, cl, &e.key),
        (("protection.crossplane.io", "Usage"), _) => usage_changed(sh, cl, &e.key, &e.object),
        _ => {}
    }
    if e.kind == EventType::Deleted {
        release_usages(sh, cl);
        collect_garbage(sh, cl, &e.object);
    }
    terminate_namespaces(sh, cl);
}

fn resync(sh: &Arc<Shared>, cl: &Arc<ClusterState>, scheduled: &mut HashMap<Key, i64>) {
    let Some(res) = sh.find("helm.m.crossplane.io", "v1beta1", "releases") else {
        return;
    };
    let releases: Vec<(Key, Value)> = cl
        .store()
        .list(res, None, None)
        .map(|(k, v)| (k.clone(), (**v).clone()))
        .collect();
    for (k, v) in releases {
        release(sh, cl, &k, &v, scheduled);
    }
}

fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn release(
    sh: &Arc<Shared>,
    cl: &Arc<ClusterState>,
    k: &Key,
    obj: &Value,
    scheduled: &mut HashMap<Key, i64>,
) {
    if objects::is_deleting(obj) {
        if scheduled.get(k) != Some(&-1) {
            scheduled.insert(k.clone(), -1);
            let (sh, cl, k) = (sh.clone(), cl.clone(), k.clone());
            tokio::spawn(async move {
                tokio::time::sleep(sh.config.ready_after / 2).await;
                uninstall(&sh, &cl, &k);
            });
        }
        return;
    }
    if !objects::finalizers(obj).iter().any(|f| f == HELM_FINALIZER) {
        mutate(sh, cl, k, None, HELM_MANAGER, |o| {
            add_finalizer(o, HELM_FINALIZER)
        });
        return;
    }
    let generation = generation(obj);
    if scheduled.get(k) == Some(&generation)
        || obj
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            == Some(generation)
    {
        return;
    }
    scheduled.insert(k.clone(), generation);
    let installed = obj.pointer("/status/atProvider/revision").is_some();
    mutate(sh, cl, k, Some("status"), HELM_MANAGER, |o| {
        let (state, reason) = if installed {
            ("pending-upgrade", "Unavailable")
        } else {
            ("pending-install", "Creating")
        };
        set_conditions(
            o,
            vec![
                condition("Synced", "True", "ReconcileSuccess", None, generation),
                condition("Ready", "False", reason, None, generation),
            ],
        );
        if installed {
            o["status"]["atProvider"]["state"] = Value::String(state.into());
        }
        true
    });
    let (sh, cl, k) = (sh.clone(), cl.clone(), k.clone());
    tokio::spawn(async move {
        tokio::time::sleep(sh.config.ready_after).await;
        install(&sh, &cl, &k, generation);
    });
}

fn install(sh: &Shared, cl: &ClusterState, k: &Key, generation_wanted: i64) {
    let Some(obj) = cl.store().get(k) else { return };
    if generation(&obj) != generation_wanted || objects::is_deleting(&obj) {
        return;
    }
    let chart = &obj["spec"]["forProvider"]["chart"];
    let name = chart["name"].as_str().unwrap_or_default();
    let version = chart["version"].as_str().unwrap_or_default();
    let repo = chart["repository"].as_str().unwrap_or_default();
    let install_ns = obj
        .pointer("/spec/forProvider/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    match sh.config.catalogue.resolve(name, version, repo) {
        Ok(c) => {
            ensure_namespace(sh, cl, &install_ns);
            for d in &c.deployments {
                ensure_deployment(
                    sh,
                    cl,
                    &install_ns,
                    d,
                    &k.name,
                    &format!("{name}-{version}"),
                );
            }
            let prev = obj
                .pointer("/status/atProvider/revision")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let version = version.to_string();
            mutate(sh, cl, k, Some("status"), HELM_MANAGER, |o| {
                set_conditions(
                    o,
                    vec![
                        condition(
                            "Synced",
                            "True",
                            "ReconcileSuccess",
                            None,
                            generation_wanted,
                        ),
                        condition("Ready", "True", "Available", None, generation_wanted),
                    ],
                );
                let description = if prev == 0 {
                    "Install complete"
                } else {
                    "Upgrade complete"
                };
                o["status"]["atProvider"] = json!({"state": "deployed", "revision": prev + 1, "version": version, "releaseDescription": description});
                o["status"]["observedGeneration"] = json!(generation_wanted);
                o["status"]["synced"] = json!(true);
                true
            });
            let (reason, message) = if prev == 0 {
                (
                    "CreatedExternalResource",
                    "Successfully requested creation of external resource",
                )
            } else {
                (
                    "UpdatedExternalResource",
                    "Successfully requested update of external resource",
                )
            };
            release_event(sh, cl, k, events::Type::Normal, reason, message);
        }
        Err(message) => {
            let message = format!("cannot install release: {message}");
            mutate(sh, cl, k, Some("status"), HELM_MANAGER, |o| {
                set_conditions(
                    o,
                    vec![
                        condition(
                            "Synced",
                            "False",
                            "ReconcileError",
                            Some(&message),
                            generation_wanted,
                        ),
                        condition(
                            "Ready",
                            "False",
                            "Unavailable",
                            Some(&message),
                            generation_wanted,
                        ),
                    ],
                );
                o["status"]["observedGeneration"] = json!(generation_wanted);
                o["status"]["failed"] = json!(o["status"]["failed"].as_i64().unwrap_or(0) + 1);
                true
            });
            // crossplane-runtime wraps the provider's error as "create failed" before the
            // Release exists in Helm, "update failed" after.
            let (reason, message) = if obj.pointer("/status/atProvider/revision").is_some() {
                (
                    "CannotUpdateExternalResource",
                    format!("update failed: {message}"),
                )
            } else {
                (
                    "CannotCreateExternalResource",
                    format!("create failed: {message}"),
                )
            };
            release_event(sh, cl, k, events::Type::Warning, reason, &message);
        }
    }
}

fn ensure_namespace(sh: &Shared, cl: &ClusterState, ns: &str) {
    let Some(res) = sh.find("", "v1", "namespaces") else {
        return;
    };
    if cl.store().get(&key(res, "", ns)).is_some() {
        return;
    }
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let t = Target {
        res,
        namespace: None,
        name: ns,
        subresource: None,
    };
    // AlreadyExists from a concurrent creation is the outcome wanted.
    let _ = verbs::create(sh, cl, &t, body, &opts(HELM_MANAGER));
}

fn ensure_deployment(
    sh: &Shared,
    cl: &ClusterState,
    ns: &str,
    name: &str,
    release: &str,
    chart: &str,
) {
    let Some(res) = sh.find("apps", "v1", "deployments") else {
        return;
    };
    let k = key(res, ns, name);
    let body = crds::operator_deployment(ns, name, release, chart);
    if cl.store().get(&k).is_none() {
        let t = Target {
            res,
            namespace: Some(ns),
            name,
            subresource: None,
        };
        if verbs::create(sh, cl, &t, body, &opts("helm")).is_err() {
            return;
        }
    } else {
        mutate(sh, cl, &k, None, "helm", |o| {
            let before = o.clone();
            o["metadata"]["labels"]["helm.sh/chart"] = Value::String(chart.into());
            *o != before
        });
    }
    mutate(sh, cl, &k, Some("status"), "kube-controller-manager", |o| {
        let g = generation(o);
        let status = json!({
            "observedGeneration": g, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed.")}
            ]
        });
        if o["status"]["observedGeneration"] == json!(g) {
            return false;
        }
        o["status"] = status;
        true
    });
}

fn uninstall(sh: &Shared, cl: &ClusterState, k: &Key) {
    let Some(obj) = cl.store().get(k) else { return };
    let chart_name = obj
        .pointer("/spec/forProvider/chart/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ns = obj
        .pointer("/spec/forProvider/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if let (Some(chart), Some(res)) = (
        sh.config.catalogue.charts.get(chart_name),
        sh.find("apps", "v1", "deployments"),
    ) {
        for d in &chart.deployments {
            let t = Target {
                res,
                namespace: Some(ns),
                name: d,
                subresource: None,
            };
            let _ = verbs::delete(sh, cl, &t, &DeleteOpts::default());
        }
    }
    release_event(
        sh,
        cl,
        k,
        events::Type::Normal,
        "DeletedExternalResource",
        "Successfully requested deletion of external resource",
    );
    mutate(sh, cl, k, None, HELM_MANAGER, |o| {
        remove_finalizer(o, HELM_FINALIZER)
    });
}

/// An event about the Release as it is now (its current uid and resourceVersion).
fn release_event(
    sh: &Shared,
    cl: &ClusterState,
    k: &Key,
    type_: events::Type,
    reason: &str,
    message: &str,
) {
    let Some(obj) = cl.store().get(k) else { return };
    let note = Note {
        type_,
        reason,
        message,
        component: RELEASE_RECORDER,
    };
    events::record(sh, cl, &obj, &note);
}

fn usage_changed(sh: &Shared, cl: &ClusterState, k: &Key, obj: &Value) {
    if objects::is_deleting(obj) {
        if !usage::by_exists(sh, &cl.store(), k, obj) {
            mutate(sh, cl, k, None, CROSSPLANE_MANAGER, |o| {
                remove_finalizer(o, USAGE_FINALIZER)
            });
        }
        return;
    }
    if !objects::finalizers(obj)
        .iter()
        .any(|f| f == USAGE_FINALIZER)
    {
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
fn release_usages(sh: &Shared, cl: &ClusterState) {
    for_each_usage(sh, cl, objects::is_deleting);
}

/// Every Usage, as the controller sees them when it starts.
fn reconcile_usages(sh: &Shared, cl: &ClusterState) {
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
        usage_changed(sh, cl, &k, &u);
    }
}

fn replay(sh: &Shared, cl: &ClusterState, usage_key: &Key) {
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

/// Background propagation: dependents of a deleted object go too.
fn collect_garbage(sh: &Shared, cl: &ClusterState, deleted: &Value) {
    let Some(uid) = meta_str(deleted, "uid") else {
        return;
    };
    let dependents: Vec<Key> = cl
        .store()
        .all()
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in dependents {
        let _ = verbs::delete(sh, cl, &target(sh, &k, None), &DeleteOpts::default());
    }
    finish_foreground(sh, cl);
}

/// Dependents none of whose owners exist any more, as the garbage collector finds them
/// when it starts (an owner that went while it was not running).
fn collect_orphans(sh: &Shared, cl: &ClusterState) {
    let orphans: Vec<Key> = {
        let store = cl.store();
        let uids: std::collections::HashSet<&str> = store
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
fn finish_foreground(sh: &Shared, cl: &ClusterState) {
    let waiting: Vec<Key> = cl
        .store()
        .all()
        .filter(|(_, o)| {
            objects::is_deleting(o)
                && objects::finalizers(o)
                    .iter()
                    .any(|f| f == "foregroundDeletion")
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in waiting {
        let uid = cl
            .store()
            .get(&k)
            .and_then(|o| meta_str(&o, "uid").map(String::from))
            .unwrap_or_default();
        let has_dependents = cl.store().all().any(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
        });
        if !has_dependents {
            mutate(sh, cl, &k, None, "kube-controller-manager", |o| {
                remove_finalizer(o, "foregroundDeletion")
            });
        }
    }
}

/// A terminating namespace deletes its contents, then goes once they are gone.
fn terminate_namespaces(sh: &Shared, cl: &ClusterState) {
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
