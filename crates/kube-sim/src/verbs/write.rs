//! Create and update, and what every write goes through: type, namespace and schema
//! checks, and the commit (ownership tracking, finalizer completion, no-op detection, dry
//! run).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{subject, target_key, Reply, Target, Validation, WriteOpts};
use crate::cluster::{key, ClusterState, Shared};
use crate::objects::{self, meta_str};
use crate::ssa::{self, WriteContext};
use crate::status::{ApiError, Subject};
use crate::store::Store;
use crate::typed;
use crate::validation;

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

pub(super) fn check_namespace(sh: &Shared, store: &Store, t: &Target<'_>) -> Result<(), ApiError> {
    let Some(ns) = t.namespace else { return Ok(()) };
    let ns_res = sh.find("", "v1", "namespaces");
    let live = ns_res.and_then(|res| store.get(&key(res, "", ns)));
    match live {
        None => Err(ApiError::not_found(Subject {
            group: "",
            plural: "namespaces",
            name: ns,
        })),
        Some(n) if objects::is_deleting(&n) => Err(ApiError::forbidden(
            subject(sh, t.res, t.name),
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )
        .with_causes(vec![json!({
            "reason": "NamespaceTerminating",
            "message": format!("namespace {ns} is being terminated"),
            "field": "metadata.namespace",
        })])),
        Some(_) => Ok(()),
    }
}

/// Schema pruning and validation of a custom resource body.
pub(super) fn validate(
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
pub(super) fn validate_as(
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
    // The server defaults what it decodes; an apply configuration is merged first, and the
    // merged object defaulted.
    if !partial {
        validation::apply_defaults(schema, obj);
    }
    let mut found = validation::check(schema, obj);
    if partial {
        found.causes.retain(|c| c["reason"] != "FieldValueRequired");
    } else {
        found.causes.append(&mut found.rules);
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

/// A new version of an object, checked and ready to be committed.
pub(super) struct Change {
    /// The live object; `None` for a create.
    pub old: Option<Arc<Value>>,
    pub new: Value,
    /// Server-side apply already recorded the write in `managedFields`.
    pub owned_by_apply: bool,
    /// The `Warning`s to answer with (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

/// Commits a new version of an object: ownership tracking, finalizer completion, no-op
/// detection and dry run.
pub(super) fn commit(
    sh: &Shared,
    store: &mut Store,
    t: &Target<'_>,
    o: &WriteOpts,
    change: Change,
) -> Result<Reply, ApiError> {
    let Change {
        old,
        mut new,
        owned_by_apply,
        warnings,
    } = change;
    let r = &sh.registry[t.res];
    objects::drop_empty_metadata(&mut new);
    if r.kind == "ConfigMap" && r.group.is_empty() {
        super::configmap::check(t.name, old.as_deref(), &new)?;
    }
    if r.kind == "Secret" && r.group.is_empty() && t.subresource.is_none() {
        super::secret::prepare(&mut new);
        super::secret::check(t.name, old.as_deref(), &new)?;
    }
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
        // A namespace waits on its spec.finalizers and its contents, not on metadata's.
        if objects::is_deleting(&new)
            && objects::finalizers(&new).is_empty()
            && !(r.kind == "Namespace" && r.group.is_empty())
        {
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

pub(super) fn prepare_new(sh: &Shared, t: &Target<'_>, obj: &mut Value) -> Result<(), ApiError> {
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
    let change = Change {
        old: None,
        new: body,
        owned_by_apply: false,
        warnings,
    };
    commit(sh, &mut store, &t, o, change)
}

pub(super) fn stale(sh: &Shared, t: &Target<'_>) -> ApiError {
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
    let change = Change {
        old: Some(old),
        new: body,
        owned_by_apply: false,
        warnings,
    };
    commit(sh, &mut store, t, o, change)
}
