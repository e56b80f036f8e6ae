//! Decoding of built-in kinds into their typed form, as the API server decodes a body into
//! its Go struct before anything else: a field of the wrong JSON type (`replicas: "two"`)
//! fails there. Unknown fields are not this step's business (see `validation`). The
//! k8s-openapi types stand in for the Go structs: they are generated from the same
//! OpenAPI, accept what Go accepts for quantities and int-or-strings, and default missing
//! required fields as Go's zero values do.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::crds::ResourceType;
use super::status::ApiError;

use k8s_openapi::api::{
    apps::v1 as apps, coordination::v1 as coordination, core::v1 as core, events::v1 as events,
};

/// How the body reached the server: decoded from JSON (create, update, patch) or
/// converted for server-side apply, which words and codes the failure differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Decode,
    Apply,
}

struct Mismatch {
    path: String,
    got: String,
    want: String,
}

fn decode<T: DeserializeOwned>(obj: &Value) -> Result<(), Mismatch> {
    serde_path_to_error::deserialize::<_, T>(obj.clone())
        .map(drop)
        .map_err(|e| {
            let path = e.path().to_string();
            let text = e.inner().to_string();
            // serde_json words it `invalid type: string "two", expected i32`.
            let got = text
                .strip_prefix("invalid type: ")
                .or_else(|| text.strip_prefix("invalid value: "))
                .and_then(|r| r.split([' ', ',']).next())
                .unwrap_or("value")
                .to_string();
            let want = text
                .rsplit_once(", expected ")
                .map(|(_, w)| w.to_string())
                .unwrap_or(text.clone());
            Mismatch { path, got, want }
        })
}

fn go_value(serde: &str) -> &str {
    match serde {
        "integer" | "floating" => "number",
        "boolean" => "bool",
        "map" => "object",
        "sequence" => "array",
        "unit" => "null",
        other => other,
    }
}

fn go_type(serde: &str) -> String {
    match serde {
        "i32" => "int32".into(),
        "i64" => "int64".into(),
        "a boolean" => "bool".into(),
        "a string" | "a borrowed string" | "string" => "string".into(),
        "a sequence" => "[]".into(),
        s if s.starts_with("struct ") || s == "a map" => "map".into(),
        s => s.into(),
    }
}

fn smd_type(serde: &str) -> &str {
    match serde {
        "i32" | "i64" | "f64" => "numeric (int or float)",
        "a boolean" => "boolean",
        "a sequence" => "list",
        s if s.starts_with("struct ") || s == "a map" => "map",
        _ => "string",
    }
}

/// Checks `obj` decodes as the built-in kind `r` serves; CRD-backed kinds pass (their
/// structural schema is checked elsewhere).
pub fn check(
    r: &ResourceType,
    obj: &Value,
    how: Path,
    namespace: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let mut typed = obj.clone();
    // The type's apiVersion and kind are the request path's; a mismatch is reported elsewhere.
    typed["apiVersion"] = Value::String(r.api_version());
    typed["kind"] = Value::String(r.kind.clone());
    let result = match (r.group.as_str(), r.version.as_str(), r.kind.as_str()) {
        ("", "v1", "Namespace") => decode::<core::Namespace>(&typed),
        ("", "v1", "Event") => decode::<core::Event>(&typed),
        ("", "v1", "ConfigMap") => decode::<core::ConfigMap>(&typed),
        ("events.k8s.io", "v1", "Event") => decode::<events::Event>(&typed),
        ("apps", "v1", "Deployment") => decode::<apps::Deployment>(&typed),
        ("coordination.k8s.io", "v1", "Lease") => decode::<coordination::Lease>(&typed),
        _ => Ok(()),
    };
    let Err(m) = result else { return Ok(()) };
    Err(match how {
        Path::Decode => {
            // Go's path names the fields without list indices.
            let mut path = String::new();
            let mut skipping = false;
            for c in m.path.chars() {
                match c {
                    '[' => skipping = true,
                    ']' => skipping = false,
                    c if !skipping => path.push(c),
                    _ => {}
                }
            }
            ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: json: cannot unmarshal {got} into Go struct field {path} of type {want}",
                kind = r.kind,
                v = r.version,
                got = go_value(&m.got),
                want = go_type(&m.want),
            ))
        }
        // The API server returns the converter's error unwrapped, so it is a 500 without
        // a reason.
        Path::Apply => ApiError::new(
            500,
            "",
            format!(
                "failed to create typed patch object ({}/{name}; {}, Kind={}): .{}: expected {}, got {}",
                namespace.unwrap_or_default(),
                r.api_version(),
                r.kind,
                m.path,
                smd_type(&m.want),
                go_value(&m.got),
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> ResourceType {
        crate::crds::registry()
            .into_iter()
            .find(|r| r.kind == "Deployment")
            .unwrap()
    }

    #[test]
    fn a_wrongly_typed_field_is_named_with_the_go_type() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": "two",
            "template": {"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}});
        let e = check(&deployment(), &d, Path::Decode, Some("ns"), "web").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field spec.replicas of type int32"
        );
        let e = check(&deployment(), &d, Path::Apply, Some("ns"), "web").unwrap_err();
        assert_eq!(e.code, 500);
        assert!(e.message.contains(
            "(ns/web; apps/v1, Kind=Deployment): .spec.replicas: expected numeric (int or float), got string"
        ));
    }

    #[test]
    fn what_go_accepts_passes_and_list_indices_leave_the_go_path() {
        let d = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "c", "resources": {"limits": {"cpu": 1}}, "ports": [{"containerPort": 80}]}]}}}});
        assert!(check(&deployment(), &d, Path::Decode, None, "x").is_ok());
        let bad = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "ports": [{"containerPort": "80"}]}]}}}});
        let e = check(&deployment(), &bad, Path::Decode, None, "x").unwrap_err();
        assert!(
            e.message
                .contains("field spec.template.spec.containers.ports.containerPort of type int32"),
            "{}",
            e.message
        );
    }
}
