//! OpenAPI v3 documents: the index at `/openapi/v3` and one document per group-version,
//! enough for kubectl to learn each kind's schema and that PATCH takes `fieldValidation`
//! (it decides between server-side and client-side validation from them); and the one
//! OpenAPI v2 (Swagger 2.0) document at `/openapi/v2` that older clients read, with each
//! schema converted as kube-apiserver publishes a CRD's in v2.

use serde_json::{json, Map, Value};

use super::cluster::Shared;
use super::crds::ResourceType;

/// The resource types a cluster serves (`served` by registry index).
fn served_types<'a>(sh: &'a Shared, served: &'a [bool]) -> impl Iterator<Item = &'a ResourceType> {
    sh.registry
        .iter()
        .enumerate()
        .filter(|(i, _)| served.get(*i).copied().unwrap_or(true))
        .map(|(_, r)| r)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable content hash so clients cache documents the way they cache the real ones.
fn hash(doc: &Value) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, doc.to_string().as_bytes());
    d.as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The index; its URLs are relative to the server's root.
pub fn index(sh: &Shared, served: &[bool]) -> Value {
    let mut paths = Map::new();
    let mut seen = Vec::new();
    for r in served_types(sh, served) {
        let p = gv_path(&r.group, &r.version);
        if seen.contains(&p) {
            continue;
        }
        let doc = document(sh, served, &r.group, &r.version).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
        );
        seen.push(p);
    }
    json!({"paths": paths})
}

fn schema_name(r: &ResourceType) -> String {
    let group = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", r.version, r.kind)
}

fn operation(r: &ResourceType, params: &[&str], schema_ref: &Value) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    json!({
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}}
    })
}

pub fn document(sh: &Shared, served: &[bool], group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in served_types(sh, served).filter(|r| r.group == group && r.version == version) {
        let name = schema_name(r);
        let mut schema = r.schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        schemas.insert(name.clone(), schema);
        let schema_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        let base = format!("/{}", gv_path(group, version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let write = [
            "dryRun",
            "fieldManager",
            "fieldValidation",
            "force",
            "pretty",
        ];
        paths.insert(
            item.clone(),
            json!({
                "get": operation(r, &["pretty"], &schema_ref),
                "put": operation(r, &write[..3], &schema_ref),
                "patch": operation(r, &write, &schema_ref),
                "delete": operation(r, &["dryRun", "propagationPolicy"], &schema_ref),
            }),
        );
        if r.status_subresource {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(r, &["pretty"], &schema_ref),
                    "patch": operation(r, &write, &schema_ref),
                }),
            );
        }
    }
    if schemas.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

/// `/openapi/v2`: every served type's schema under `definitions`, and its object path.
pub fn v2(sh: &Shared, served: &[bool]) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for r in served_types(sh, served) {
        let name = schema_name(r);
        let mut schema = r
            .schema
            .as_ref()
            .map(to_v2)
            .unwrap_or_else(|| json!({"type": "object"}));
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        definitions.insert(name.clone(), schema);
        let base = format!("/{}", gv_path(&r.group, &r.version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let op = json!({
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{name}")}}}
        });
        paths.insert(item, json!({"get": op}));
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "definitions": definitions
    })
}

/// A structural v3 schema as kube-apiserver publishes it in v2: without what Swagger 2.0
/// lacks (`nullable`, `anyOf`, `oneOf`, `not`) or v2 clients cannot use (CEL rules).
fn to_v2(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match (k.as_str(), v) {
            ("nullable" | "anyOf" | "oneOf" | "not" | "x-kubernetes-validations", _) => continue,
            // Property names are data, not keywords.
            ("properties" | "patternProperties", Value::Object(props)) => {
                Value::Object(props.iter().map(|(n, s)| (n.clone(), to_v2(s))).collect())
            }
            ("items" | "additionalProperties", s) => to_v2(s),
            (_, v) => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}
