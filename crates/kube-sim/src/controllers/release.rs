//! provider-helm's Release controller: it adds its finalizer, marks a new generation as
//! pending, and `ready_after` later installs or upgrades the chart from the catalogue (the
//! install namespace, the chart's operator Deployments, `Synced`/`Ready`, an Event) or
//! fails as Helm fails on a chart version that does not exist. A deleted Release is
//! uninstalled half that time later.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::write::{
    add_finalizer, condition, generation, has_finalizer, mutate, opts, remove_finalizer,
    set_conditions,
};
use crate::catalogue::{Chart, PullError};
use crate::cluster::{key, ClusterState, Shared};
use crate::crds;
use crate::events::{self, Note};
use crate::objects;
use crate::store::Key;
use crate::verbs::{self, DeleteOpts, Target};

pub const HELM_FINALIZER: &str = "finalizer.managedresource.crossplane.io";
const HELM_MANAGER: &str = "provider-helm";
/// The Event source: the recorder name crossplane-runtime's managed reconciler passes to
/// `GetEventRecorderFor`.
const RELEASE_RECORDER: &str = "managed/release.helm.m.crossplane.io";

/// The generation each Release's install is scheduled for ([`UNINSTALLING`] once its
/// uninstall is), so that the change events of the controller's own status writes
/// schedule nothing twice.
pub(super) type Scheduled = HashMap<Key, i64>;
const UNINSTALLING: i64 = -1;

/// Every Release, as the controller sees them when it starts or after it missed events.
pub(super) fn resync(sh: &Arc<Shared>, cl: &Arc<ClusterState>, scheduled: &mut Scheduled) {
    let Some(res) = sh.find("helm.m.crossplane.io", "v1beta1", "releases") else {
        return;
    };
    let releases: Vec<(Key, Value)> = cl
        .store()
        .list(res, None, None)
        .map(|(k, v)| (k.clone(), (**v).clone()))
        .collect();
    for (k, v) in releases {
        reconcile(sh, cl, &k, &v, scheduled);
    }
}

pub(super) fn reconcile(
    sh: &Arc<Shared>,
    cl: &Arc<ClusterState>,
    k: &Key,
    obj: &Value,
    scheduled: &mut Scheduled,
) {
    if objects::is_deleting(obj) {
        if scheduled.get(k) != Some(&UNINSTALLING) {
            scheduled.insert(k.clone(), UNINSTALLING);
            let (sh, cl, k) = (sh.clone(), cl.clone(), k.clone());
            tokio::spawn(async move {
                tokio::time::sleep(sh.config.ready_after / 2).await;
                uninstall(&sh, &cl, &k);
            });
        }
        return;
    }
    if !has_finalizer(obj, HELM_FINALIZER) {
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

/// Installs or upgrades the Release if it is still at `generation_wanted`: a newer
/// generation has its own install scheduled.
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
            deploy(
                sh,
                cl,
                &install_ns,
                c,
                &k.name,
                &format!("{name}-{version}"),
            );
            deployed(sh, cl, k, &obj, version, generation_wanted);
        }
        Err(error) => failed(sh, cl, k, &obj, &error, generation_wanted),
    }
}

/// What Helm creates for the chart: its namespace and operator Deployments.
fn deploy(sh: &Shared, cl: &ClusterState, ns: &str, c: &Chart, release: &str, chart: &str) {
    ensure_namespace(sh, cl, ns);
    for d in &c.deployments {
        ensure_deployment(sh, cl, ns, d, release, chart);
    }
}

/// The status and Event of a successful install or upgrade.
fn deployed(
    sh: &Shared,
    cl: &ClusterState,
    k: &Key,
    obj: &Value,
    version: &str,
    generation_wanted: i64,
) {
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

/// The status and Event of an install or upgrade Helm refused.
fn failed(
    sh: &Shared,
    cl: &ClusterState,
    k: &Key,
    obj: &Value,
    error: &PullError,
    generation_wanted: i64,
) {
    let message = format!("cannot install release: {error}");
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

/// A chart's Deployment, created by Helm and reported available by the Deployment
/// controller at once (no Pods are simulated).
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
