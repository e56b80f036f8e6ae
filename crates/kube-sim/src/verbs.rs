//! The API verbs on one cluster (get, list, create, update, patch, delete) with the API
//! server's semantics; HTTP parsing lives in the router, watches in `watch`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::cluster::{key, ClusterState, Replay, Shared};
use super::objects::{self, meta_str};
use super::selector::{FieldSelector, LabelSelector};
use super::ssa::{self, WriteContext};
use super::status::{ApiError, Subject};
use super::store::{Key, Store};
use super::typed;
use super::usage;
use super::validation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Strict,
    Warn,
    Ignore,
}

/// Options every write carries (query parameters of the request).
#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub manager: String,
    pub validation: Validation,
    pub force: bool,
}

/// A successful answer: HTTP code, body and `Warning` headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Self {
        Self {
            code,
            body,
            warnings: Vec::new(),
        }
    }
}

/// Which object a request addresses.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub res: usize,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub subresource: Option<&'a str>,
}

fn subject<'a>(sh: &'a Shared, res: usize, name: &'a str) -> Subject<'a> {
    let r = &sh.registry[res];
    Subject {
        group: &r.group,
        plural: &r.plural,
        name,
    }
}

fn target_key(t: &Target<'_>) -> Key {
    key(t.res, t.namespace.unwrap_or_default(), t.name)
}

pub fn get(sh: &Shared, cl: &ClusterState, t: &Target<'_>) -> Result<Reply, ApiError> {
    let obj = cl.store().get(&target_key(t));
    obj.map(|o| Reply::ok(200, (*o).clone()))
        .ok_or_else(|| ApiError::not_found(subject(sh, t.res, t.name)))
}

/// List parameters, parsed from the query.
#[derive(Debug, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

fn encode_continue(rv: u64, last: &Key) -> String {
    use base64::Engine;
    let token = json!({"rv": rv, "ns": last.namespace, "name": last.name});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str, res: usize) -> Result<(u64, Key), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?;
    let name = v["name"].as_str().ok_or_else(bad)?;
    Ok((rv, key(res, ns, name)))
}

pub fn list(
    sh: &Shared,
    cl: &ClusterState,
    res: usize,
    namespace: Option<&str>,
    o: &ListOpts,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[res];
    let store = cl.store();
    let after = match &o.continue_token {
        Some(t) => {
            let (rv, k) = decode_continue(t, res)?;
            if store.events_since(rv).is_err() {
                return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to start a consistent list."));
            }
            Some(k)
        }
        None => None,
    };
    let mut items = Vec::new();
    let mut last = None;
    let mut remaining = 0usize;
    for (k, obj) in store.list(res, namespace, after.as_ref()) {
        if !(o.labels.matches(obj) && o.fields.matches(obj)) {
            continue;
        }
        if o.limit.is_some_and(|l| l > 0 && items.len() >= l) {
            remaining += 1;
            continue;
        }
        items.push((**obj).clone());
        last = Some(k.clone());
    }
    let rv = store.resource_version();
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if remaining > 0 {
        if let Some(last) = last {
            metadata["continue"] = Value::String(encode_continue(rv, &last));
            metadata["remainingItemCount"] = Value::from(remaining);
        }
    }
    Ok(Reply::ok(
        200,
        json!({
            "apiVersion": r.api_version(),
            "kind": format!("{}List", r.kind),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

fn check_type(sh: &Shared, res: usize, body: &Value) -> Result<(), ApiError> {
    let r = &sh.registry[res];
    let (av, kind) = (body["apiVersion"].as_str(), body["kind"].as_str());
    if av.is_some_and(|a| a != r.api_version()) || kind.is_some_and(|k| k != r.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            av.unwrap_or_default(),
            r.api_version()
        )));
    }
    Ok(())
}

fn check_namespace(sh: &Shared, store: &Store, t: &Target<'_>) -> Result<(), ApiError> {
    let Some(ns) = t.namespace else { return Ok(()) };
    let ns_res = sh.find("", "v1", "namespaces");
    let live = ns_res.and_then(|res| store.get(&key(res, "", ns)));
    match live {
        None => Err(ApiError::not_found(Subject {
            group: "",
            plural: "namespaces",
            name: ns,
        })),
        Some(n) if objects::is_deleting(&n) => Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Schema pruning and validation of a custom resource body.
fn validate(
    sh: &Shared,
    res: usize,
    name: &str,
    obj: &mut Value,
    v: Validation,
) -> Result<Vec<String>, ApiError> {
    validate_as(sh, res, name, obj, v, false)
}

/// [`validate`]; `partial` for an apply configuration, where a required field may be left
/// out.
fn validate_as(
    sh: &Shared,
    res: usize,
    name: &str,
    obj: &mut Value,
    v: Validation,
    partial: bool,
) -> Result<Vec<String>, ApiError> {
    let r = &sh.registry[res];
    let Some(schema) = &r.schema else {
        return Ok(Vec::new());
    };
    let mut found = validation::check(schema, obj);
    if partial {
        found.causes.retain(|c| c["reason"] != "FieldValueRequired");
    }
    if !found.unknown.is_empty() && v == Validation::Strict {
        return Err(ApiError::bad_request(validation::strict_message(
            &r.kind,
            &r.version,
            &found.unknown,
        )));
    }
    if !found.causes.is_empty() {
        return Err(ApiError::invalid(&r.kind, &r.group, name, found.causes));
    }
    Ok(match v {
        Validation::Warn => found
            .unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect(),
        _ => Vec::new(),
    })
}

fn strip_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    v
}

/// Commits a new version of an object: ownership tracking, finalizer completion, no-op
/// detection and dry run.
#[allow(
    clippy::too_many_arguments,
    reason = "one internal step with the request's parts"
)]
fn commit(
    sh: &Shared,
    store: &mut Store,
    t: &Target<'_>,
    old: Option<Arc<Value>>,
    mut new: Value,
    o: &WriteOpts,
    owned_by_apply: bool,
    warnings: Vec<String>,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[t.res];
    if !owned_by_apply {
        let now = objects::now();
        let api_version = r.api_version();
        let ctx = WriteContext {
            manager: &o.manager,
            api_version: &api_version,
            subresource: t.subresource,
            now: &now,
        };
        new = ssa::track_update(&sh.schemas[t.res], old.as_deref(), &new, &ctx);
    }
    let k = target_key(t);
    let created = old.is_none();
    // The namespace strategy sets the phase on create, after the main endpoint's write
    // lost any client-sent status.
    if created && r.kind == "Namespace" && r.group.is_empty() && t.subresource.is_none() {
        new["status"] = json!({"phase": "Active"});
    }
    if let Some(old) = &old {
        if strip_managed(old) == strip_managed(&new) {
            return Ok(Reply {
                code: 200,
                body: (**old).clone(),
                warnings,
            });
        }
        if objects::is_deleting(&new) && objects::finalizers(&new).is_empty() {
            if !o.dry_run {
                store.remove(&k);
            }
            return Ok(Reply {
                code: 200,
                body: new,
                warnings,
            });
        }
    }
    let body = if o.dry_run {
        new
    } else {
        (*store.put(k, new)).clone()
    };
    Ok(Reply {
        code: if created { 201 } else { 200 },
        body,
        warnings,
    })
}

fn prepare_new(sh: &Shared, t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
    let r = &sh.registry[t.res];
    if meta_str(obj, "name").is_none() {
        if let Some(prefix) = meta_str(obj, "generateName").map(String::from) {
            let suffix: String = objects::random_bytes::<5>()
                .iter()
                .map(|b| char::from(b"bcdfghjklmnpqrstvwxz2456789"[usize::from(*b) % 27]))
                .collect();
            objects::meta_mut(obj)
                .insert("name".into(), Value::String(format!("{prefix}{suffix}")));
        }
    }
    obj["apiVersion"] = Value::String(r.api_version());
    obj["kind"] = Value::String(r.kind.clone());
    objects::init_metadata(obj, t.namespace, r.crd.is_some() || r.kind == "Deployment");
    if r.status_subresource && r.kind != "Namespace" {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    if r.kind == "Namespace" {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        objects::meta_mut(obj)
            .entry("labels")
            .or_insert_with(|| json!({}))["kubernetes.io/metadata.name"] = Value::String(name);
        obj["status"] = json!({"phase": "Active"});
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    Ok(())
}

pub fn create(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    mut body: Value,
    o: &WriteOpts,
) -> Result<Reply, ApiError> {
    check_type(sh, t.res, &body)?;
    if let (Some(url_ns), Some(body_ns)) = (t.namespace, meta_str(&body, "namespace")) {
        if url_ns != body_ns {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
    }
    if meta_str(&body, "resourceVersion").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    prepare_new(sh, t, &mut body)?;
    let Some(name) = meta_str(&body, "name").map(String::from) else {
        let r = &sh.registry[t.res];
        return Err(ApiError::invalid(
            &r.kind,
            &r.group,
            "",
            vec![
                json!({"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}),
            ],
        ));
    };
    let t = Target { name: &name, ..*t };
    // The body is decoded first; then admission (NamespaceLifecycle) checks the
    // namespace, before the object is validated against its schema.
    typed::check(
        &sh.registry[t.res],
        &body,
        typed::Path::Decode,
        t.namespace,
        &name,
    )?;
    check_namespace(sh, &cl.store(), &t)?;
    let warnings = validate(sh, t.res, &name, &mut body, o.validation)?;
    let mut store = cl.store();
    if store.get(&target_key(&t)).is_some() {
        return Err(ApiError::already_exists(subject(sh, t.res, &name)));
    }
    commit(sh, &mut store, &t, None, body, o, false, warnings)
}

fn stale(sh: &Shared, t: &Target<'_>) -> ApiError {
    ApiError::conflict(
        subject(sh, t.res, t.name),
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub fn update(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    mut body: Value,
    o: &WriteOpts,
) -> Result<Reply, ApiError> {
    check_type(sh, t.res, &body)?;
    if meta_str(&body, "name").is_some_and(|n| n != t.name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    typed::check(
        &sh.registry[t.res],
        &body,
        typed::Path::Decode,
        t.namespace,
        t.name,
    )?;
    let warnings = validate(sh, t.res, t.name, &mut body, o.validation)?;
    let mut store = cl.store();
    let old = store
        .get(&target_key(t))
        .ok_or_else(|| ApiError::not_found(subject(sh, t.res, t.name)))?;
    let want_rv = meta_str(&body, "resourceVersion").filter(|v| !v.is_empty());
    if want_rv.is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion")) {
        return Err(stale(sh, t));
    }
    let r = &sh.registry[t.res];
    body["apiVersion"] = Value::String(r.api_version());
    body["kind"] = Value::String(r.kind.clone());
    objects::carry_over(&old, &mut body, t.subresource, r.status_subresource);
    commit(sh, &mut store, t, Some(old), body, o, false, warnings)
}

/// The patch content types the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Apply,
    Merge,
    Json,
    Strategic,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            _ => None,
        }
    }
}

pub fn patch(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    kind: PatchKind,
    body: &[u8],
    o: &WriteOpts,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[t.res];
    if kind == PatchKind::Strategic && !r.is_builtin() {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json",
        ));
    }
    if kind == PatchKind::Apply {
        return apply(sh, cl, t, body, o);
    }
    let mut store = cl.store();
    let old = store
        .get(&target_key(t))
        .ok_or_else(|| ApiError::not_found(subject(sh, t.res, t.name)))?;
    let mut new = (*old).clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(&mut new, &ops)
                .map_err(|e| ApiError::invalid(&r.kind, &r.group, t.name, vec![json!({"reason": "FieldValueInvalid", "message": e.to_string(), "field": ""})]))?;
        }
        _ => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(&mut new, &p);
        }
    }
    if meta_str(&new, "resourceVersion") != meta_str(&old, "resourceVersion") {
        return Err(stale(sh, t));
    }
    if meta_str(&new, "name") != Some(t.name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    typed::check(r, &new, typed::Path::Decode, t.namespace, t.name)?;
    let warnings = validate(sh, t.res, t.name, &mut new, o.validation)?;
    objects::carry_over(&old, &mut new, t.subresource, r.status_subresource);
    commit(sh, &mut store, t, Some(old), new, o, false, warnings)
}

fn apply(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    body: &[u8],
    o: &WriteOpts,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[t.res];
    if o.manager.is_empty() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![
                json!({"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}),
            ],
        ));
    }
    let mut config: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration must be an object",
        ));
    }
    if config["apiVersion"].as_str() != Some(&r.api_version())
        || config["kind"].as_str() != Some(&r.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            config["apiVersion"].as_str().unwrap_or_default(),
            r.api_version()
        )));
    }
    if meta_str(&config, "name").is_some_and(|n| n != t.name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    typed::check(r, &config, typed::Path::Apply, t.namespace, t.name)?;
    // An apply configuration is partial: it holds only the fields its manager cares about
    // (the SSA docs hand `spec.replicas` of a Deployment over with a config holding nothing
    // else). Unknown fields, types and enums are checked in it; required fields only in
    // the merged object, below.
    let warnings = validate_as(sh, t.res, t.name, &mut config, o.validation, true)?;
    let mut store = cl.store();
    let old = store.get(&target_key(t));
    if old.is_none() {
        check_namespace(sh, &store, t)?;
    }
    let now = objects::now();
    let api_version = r.api_version();
    let ctx = WriteContext {
        manager: &o.manager,
        api_version: &api_version,
        subresource: t.subresource,
        now: &now,
    };
    let mut new =
        ssa::apply(&sh.schemas[t.res], old.as_deref(), &config, o.force, &ctx).map_err(|c| {
            ApiError::new(409, "Conflict", c.message()).with_details(json!({
                "name": t.name, "group": r.group, "kind": r.plural, "causes": c.causes()
            }))
        })?;
    match &old {
        Some(old) => {
            if meta_str(&config, "resourceVersion")
                .is_some_and(|rv| Some(rv) != meta_str(old, "resourceVersion"))
            {
                return Err(stale(sh, t));
            }
            objects::carry_over(old, &mut new, t.subresource, r.status_subresource);
        }
        None => {
            objects::meta_mut(&mut new).insert("name".into(), Value::String(t.name.to_string()));
            let managed = new.pointer("/metadata/managedFields").cloned();
            prepare_new(sh, t, &mut new)?;
            if let Some(m) = managed {
                objects::meta_mut(&mut new).insert("managedFields".into(), m);
            }
        }
    }
    validate(sh, t.res, t.name, &mut new, Validation::Ignore)?;
    commit(sh, &mut store, t, old, new, o, true, warnings)
}

/// DeleteOptions from the request body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

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
