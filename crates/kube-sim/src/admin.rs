//! The admin API (`/admin/...`, its own bearer token in `<out>/admin-token`): list clusters,
//! inject faults, expire watches, rotate a cluster's token (rewriting its kubeconfig), make
//! a hand edit as another field manager, install or remove a cluster's CRDs, and read the
//! audit log and the request counts.

use std::sync::Arc;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::sim::{Faults, Sim};
use super::status::ApiError;
use super::verbs::{self, PatchKind, Target, Validation, WriteOpts};
use super::wire::{error_response, json_response, query, token_eq, Body};
use super::{kubeconfig, objects};

pub async fn handle(
    sim: &Arc<Sim>,
    req: http::Request<hyper::body::Incoming>,
    path: String,
) -> http::Response<Body> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_eq(t, &sim.admin_token));
    if !authorized {
        return error_response(&ApiError::unauthorized());
    }
    let method = req.method().clone();
    let q = query(req.uri().query());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error_response(&ApiError::bad_request("cannot read the request body")),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let result = match (method.as_str(), segs.as_slice()) {
        ("GET", ["clusters"]) => Ok(clusters(sim)),
        ("GET", ["audit"]) => {
            Ok(json!({"entries": sim.audit.entries(q.get("cluster").map(String::as_str))}))
        }
        ("GET", ["requests"]) => Ok(json!({"requests": sim.requests.snapshot()})),
        ("POST" | "PUT", ["clusters", name, "faults"]) => set_faults(sim, name, &body),
        ("POST", ["clusters", name, "expire-watches"]) => expire(sim, name),
        ("POST", ["clusters", name, "rotate-token"]) => rotate(sim, name, &body),
        ("POST", ["clusters", name, "edit"]) => edit(sim, name, &body),
        ("GET", ["clusters", name, "crds"]) => crds(sim, name),
        ("POST", ["clusters", name, "crds"]) => set_crds(sim, name, &body),
        _ => Err(ApiError::path_not_found()),
    };
    match result {
        Ok(v) => json_response(200, &v, &[]),
        Err(e) => error_response(&e),
    }
}

fn clusters(sim: &Sim) -> Value {
    let list: Vec<Value> = sim
        .clusters
        .iter()
        .map(|c| {
            let labels: serde_json::Map<String, Value> = c.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"name": c.name, "labels": labels, "faults": c.faults(), "active": sim.existing_state(c).is_some()})
        })
        .collect();
    json!({"clusters": list})
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(404, "NotFound", format!("cluster \"{name}\" not found"))
}

fn set_faults(sim: &Sim, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let faults: Faults = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid faults: {e}")))?;
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return Err(ApiError::bad_request("errorRate must be between 0 and 1"));
    }
    *slot.faults.write().unwrap_or_else(|e| e.into_inner()) = faults.clone();
    // A server that goes down drops its open watches too, not only new requests.
    if faults.down {
        if let Some(state) = sim.existing_state(slot) {
            state.store().close_watchers();
        }
    }
    tracing::info!(cluster = name, ?faults, "faults set");
    Ok(json!({"cluster": name, "faults": faults}))
}

/// The CRDs `name` holds now (and so the kinds it serves).
fn crds(sim: &Sim, name: &str) -> Result<Value, ApiError> {
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let state = sim.state(slot);
    let sh = &sim.shared;
    let installed: Vec<String> = (0..sh.registry.len())
        .filter(|i| state.serves(sh, *i))
        .filter_map(|i| sh.crd_name(i))
        .collect();
    Ok(json!({"cluster": name, "installed": installed}))
}

/// `{"install": [crd names], "uninstall": [crd names]}`: a CRD installed is served at
/// once (Established); one uninstalled goes with every object of its kind, as
/// `kubectl delete crd` does. Only the CRDs the simulator knows can be installed.
fn set_crds(sim: &Sim, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    struct Change {
        #[serde(default)]
        install: Vec<String>,
        #[serde(default)]
        uninstall: Vec<String>,
    }
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let change: Change = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid CRD change: {e}")))?;
    let sh = &sim.shared;
    let find = |crd: &str| {
        sh.find_crd(crd)
            .ok_or_else(|| ApiError::bad_request(format!("unknown CRD {crd:?}")))
    };
    let crd_res = sh
        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("no CustomResourceDefinition type"))?;
    let state = sim.state(slot);
    for crd in &change.uninstall {
        find(crd)?;
        let t = Target {
            res: crd_res,
            namespace: None,
            name: crd,
            subresource: None,
        };
        match verbs::delete(sh, &state, &t, &verbs::DeleteOpts::default()) {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    for crd in &change.install {
        let res = find(crd)?;
        if state.serves(sh, res) {
            continue;
        }
        let object = sh
            .crd_object(res)
            .ok_or_else(|| ApiError::internal("no CRD object"))?;
        // Stored as the API server stores it once its controller has set the status.
        state
            .store()
            .put(crate::cluster::key(crd_res, "", crd), object);
    }
    tracing::info!(cluster = name, install = ?change.install, uninstall = ?change.uninstall, "CRDs changed");
    crds(sim, name)
}

fn expire(sim: &Sim, name: &str) -> Result<Value, ApiError> {
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let state = sim.state(slot);
    let mut store = state.store();
    store.expire();
    store.close_watchers();
    Ok(json!({"cluster": name, "expiredThrough": store.resource_version().to_string()}))
}

/// A new token for the cluster; the old one is refused from now on. By default the
/// kubeconfig on disk is rewritten at once; with `{"writeKubeconfig": false}` the new
/// token is only returned, so that clients keep failing with 401 until someone writes
/// it (the way a credential rotated out of band reaches a kubeconfig late).
fn rotate(sim: &Sim, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let write = if body.is_empty() {
        true
    } else {
        let req: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid rotation: {e}")))?;
        req["writeKubeconfig"].as_bool().unwrap_or(true)
    };
    let token = objects::token().map_err(|_| ApiError::internal("cannot generate a token"))?;
    let _guard = sim.files.lock().unwrap_or_else(|e| e.into_inner());
    *slot.token.write().unwrap_or_else(|e| e.into_inner()) = token.clone();
    if !write {
        tracing::info!(cluster = name, "token rotated; kubeconfig left as it was");
        return Ok(json!({"cluster": name, "rotated": true, "token": token}));
    }
    let server = sim.base_url.get().cloned().unwrap_or_default();
    let path = sim.shared.config.out.join(format!("{name}.yaml"));
    kubeconfig::write_atomic(
        &path,
        &kubeconfig::kubeconfig(name, &server, &sim.ca_pem, &token),
    )
    .map_err(|e| {
        ApiError::internal(format!(
            "token rotated but the kubeconfig was not rewritten: {e}"
        ))
    })?;
    tracing::info!(cluster = name, "token rotated");
    Ok(json!({"cluster": name, "rotated": true, "kubeconfig": path.display().to_string()}))
}

/// A hand edit: a JSON merge patch applied as `manager` (default `kubectl-edit`), the way
/// `kubectl edit` changes an object someone else manages.
fn edit(sim: &Sim, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let slot = sim.slot(name).ok_or_else(|| unknown(name))?;
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid edit: {e}")))?;
    let s = |k: &str, d: &str| req[k].as_str().unwrap_or(d).to_string();
    let (group, version, plural) = (
        s("group", "helm.m.crossplane.io"),
        s("version", "v1beta1"),
        s("resource", "releases"),
    );
    let sh = &sim.shared;
    let res = sh
        .find(&group, &version, &plural)
        .ok_or_else(ApiError::path_not_found)?;
    let (ns, obj_name) = (s("namespace", "default"), s("name", ""));
    let patch =
        serde_json::to_vec(&req["patch"]).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let t = Target {
        res,
        namespace: sh.registry[res].namespaced.then_some(ns.as_str()),
        name: &obj_name,
        subresource: None,
    };
    let o = WriteOpts {
        dry_run: false,
        manager: s("manager", "kubectl-edit"),
        validation: Validation::Strict,
        force: false,
    };
    let state = sim.state(slot);
    let reply = verbs::patch(sh, &state, &t, PatchKind::Merge, &patch, &o)?;
    sim.audit.record(super::audit::AuditEntry {
        time: objects::now(),
        cluster: name.to_string(),
        verb: "patch".into(),
        resource: format!("{plural}.{group}"),
        namespace: t.namespace.map(String::from),
        name: Some(obj_name.clone()),
        subresource: None,
        field_manager: Some(o.manager.clone()),
        code: reply.code,
        user_agent: None,
    });
    Ok(reply.body)
}
