//! Patches: JSON patch, merge and strategic merge (the latter for built-in kinds only),
//! and server-side apply through [`crate::ssa`].

use serde_json::{json, Value};

use super::write::{check_namespace, commit, prepare_new, stale, validate, validate_as, Change};
use super::{subject, target_key, PatchKind, Reply, Target, Validation, WriteOpts};
use crate::cluster::{ClusterState, Shared};
use crate::crds::ResourceType;
use crate::objects::{self, meta_str};
use crate::ssa::{self, WriteContext};
use crate::status::ApiError;
use crate::typed;

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
            // The API server answers any failed operation (a `test` that does not hold, a
            // path that is not there) with its generic 422 and empty details.
            json_patch::patch(&mut new, &ops).map_err(|_| ApiError::rejected_request())?;
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
    let change = Change {
        old: Some(old),
        new,
        owned_by_apply: false,
        warnings,
    };
    commit(sh, &mut store, t, o, change)
}

/// Server-side apply: the configuration merged into the live object (or a new one) with
/// field ownership and conflicts.
fn apply(
    sh: &Shared,
    cl: &ClusterState,
    t: &Target<'_>,
    body: &[u8],
    o: &WriteOpts,
) -> Result<Reply, ApiError> {
    let r = &sh.registry[t.res];
    let mut config = apply_configuration(r, t, body, o)?;
    typed_patch_object(r, t, &config)?;
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
            // The field manager's conflict error names no object, only the causes.
            ApiError::new(409, "Conflict", c.message()).with_details(json!({"causes": c.causes()}))
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
    let change = Change {
        old,
        new,
        owned_by_apply: true,
        warnings,
    };
    commit(sh, &mut store, t, o, change)
}

/// The apply configuration as decoded and checked before anything is looked up: a field
/// manager, a YAML object of the resource's type and name, Go-decodable.
fn apply_configuration(
    r: &ResourceType,
    t: &Target<'_>,
    body: &[u8],
    o: &WriteOpts,
) -> Result<Value, ApiError> {
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
    let config: Value = serde_yaml::from_slice(body)
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
    if let Some(named) = meta_str(&config, "name").filter(|n| *n != t.name) {
        return Err(ApiError::conflict(
            crate::status::Subject {
                group: &r.group,
                plural: &r.plural,
                name: t.name,
            },
            &format!(
                "the name of the object ({named}) does not match the name on the URL ({})",
                t.name
            ),
        ));
    }
    typed::check(r, &config, typed::Path::Apply, t.namespace, t.name)?;
    Ok(config)
}

/// The apply configuration as the field manager types it against the schema: a field the
/// schema does not declare (outside preserved maps) fails the apply with a 500, whatever
/// `fieldValidation` says, as structured-merge-diff's conversion fails in kube-apiserver.
fn typed_patch_object(r: &ResourceType, t: &Target<'_>, config: &Value) -> Result<(), ApiError> {
    let Some(schema) = &r.schema else {
        return Ok(());
    };
    let mut probe = config.clone();
    let found = crate::validation::check(schema, &mut probe);
    let errors: Vec<String> = found
        .unknown
        .iter()
        .map(|u| format!(".{u}: field not declared in schema"))
        .collect();
    let detail = match errors.as_slice() {
        [] => return Ok(()),
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    Err(ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {detail}",
            t.namespace.unwrap_or_default(),
            t.name,
            r.api_version(),
            r.kind
        ),
    ))
}
