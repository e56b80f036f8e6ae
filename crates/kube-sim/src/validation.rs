//! Structural-schema checks for custom resources: unknown fields (pruned, or rejected under
//! `fieldValidation=Strict`), types, required fields, enums and CEL rules
//! (`x-kubernetes-validations`, through [`crate::cel`]), worded as the API server words
//! them; and structural defaulting ([`apply_defaults`]).

use serde_json::{json, Map, Value};

/// What a schema walk found in an object; pruning already happened when it returns.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    /// Dotted paths of fields the schema does not declare (e.g. `spec.forProvider.foo`).
    pub unknown: Vec<String>,
    /// `Status` causes (`reason`, `message`, `field`) for invalid values.
    pub causes: Vec<Value>,
    /// Causes from CEL rules, which hold of a whole object only (not of a partial apply
    /// configuration).
    pub rules: Vec<Value>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("number", Value::Number(_)) => true,
        (w, v) => w == type_name(v),
    }
}

/// Walks `value` against `schema`, pruning unknown fields in place.
pub fn check(schema: &Value, value: &mut Value) -> Findings {
    let mut f = Findings::default();
    walk(schema, value, "", true, &mut f);
    f
}

fn walk(schema: &Value, value: &mut Value, path: &str, root: bool, f: &mut Findings) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(want) = schema["type"].as_str() {
        let ok = type_ok(want, value) || (int_or_string && (value.is_i64() || value.is_string()));
        if !ok {
            let got = type_name(value);
            f.causes.push(json!({
                "reason": "FieldValueTypeInvalid",
                "message": format!("Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
                "field": path,
            }));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            f.causes.push(json!({
                "reason": "FieldValueNotSupported",
                "message": format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
                "field": path,
            }));
        }
    }
    match value {
        Value::Object(map) => walk_object(schema, map, path, root, f),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), false, f);
                }
            }
        }
        _ => {}
    }
    let type_name = schema["type"].as_str().unwrap_or("object");
    for failure in crate::cel::check(schema, value) {
        let message = match failure {
            crate::cel::Failure::False(m) | crate::cel::Failure::Error(m) => m,
        };
        f.rules.push(json!({
            "reason": "FieldValueInvalid",
            "message": format!("Invalid value: \"{type_name}\": {message}"),
            "field": path,
        }));
    }
}

/// Structural defaulting, as the API server defaults a custom resource when it decodes
/// one: each absent property whose schema has a `default` gets it, in objects at every
/// depth (list items and map values included); `metadata` is the server's own.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    default_walk(schema, value, true);
}

fn default_walk(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    match (map.get_mut(k), s.get("default")) {
                        (Some(v), _) => default_walk(s, v, false),
                        (None, Some(d)) => {
                            let mut d = d.clone();
                            default_walk(s, &mut d, false);
                            map.insert(k.clone(), d);
                        }
                        (None, None) => {}
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    default_walk(s, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    default_walk(s, item, false);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    root: bool,
    f: &mut Findings,
) {
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(key) = req.as_str() {
            if !map.contains_key(key) {
                f.causes.push(json!({
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": join(path, key),
                }));
            }
        }
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let props = schema["properties"].as_object();
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let child_path = join(path, &key);
        // metadata is validated by the server's own rules, never pruned by the CRD schema.
        if root && (key == "metadata" || key == "apiVersion" || key == "kind") {
            continue;
        }
        let child_schema = props.and_then(|p| p.get(&key)).or(additional);
        match (child_schema, map.get_mut(&key)) {
            (Some(s), Some(v)) => walk(s, v, &child_path, false, f),
            (None, _) if preserve || schema["additionalProperties"] == true => {}
            (None, _) if props.is_none() && schema["type"] != "object" => {}
            (None, _) => {
                f.unknown.push(child_path);
                map.remove(&key);
            }
            _ => {}
        }
    }
}

/// The message `fieldValidation=Strict` fails with, as the API server phrases it.
pub fn strict_message(kind: &str, version: &str, unknown: &[String]) -> String {
    let fields: Vec<String> = unknown
        .iter()
        .map(|u| format!("unknown field \"{u}\""))
        .collect();
    format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "required": ["chart"], "properties": {
                "chart": {"type": "string"},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
            }}
        }})
    }

    #[test]
    fn unknown_fields_are_reported_and_pruned_but_preserved_maps_are_kept() {
        let mut v = json!({"metadata": {"name": "x", "labels": {}}, "spec": {
            "chart": "c", "bogus": 1, "values": {"any": {"thing": 1}}, "list": [{"n": 1, "m": 2}]
        }});
        let f = check(&schema(), &mut v);
        assert_eq!(f.unknown, vec!["spec.bogus", "spec.list[0].m"]);
        assert!(f.causes.is_empty());
        assert!(v["spec"].get("bogus").is_none());
        assert_eq!(v["spec"]["values"]["any"]["thing"], 1);
    }

    #[test]
    fn absent_properties_get_their_defaults_at_every_depth() {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object", "default": {"name": "never"}},
            "spec": {"type": "object", "properties": {
                "max": {"type": "integer", "default": 20},
                "policies": {"type": "array", "default": ["*"]},
                "ref": {"type": "object", "default": {"kind": "K"}, "properties": {
                    "kind": {"type": "string"}, "name": {"type": "string", "default": "default"}
                }},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "n": {"type": "integer", "default": 1}
                }}}
            }}
        }});
        let mut v = json!({"spec": {"max": 3, "items": [{}, {"n": 2}]}});
        apply_defaults(&schema, &mut v);
        assert_eq!(
            v,
            json!({"spec": {
                "max": 3, "policies": ["*"], "ref": {"kind": "K", "name": "default"},
                "items": [{"n": 1}, {"n": 2}]
            }})
        );
    }

    #[test]
    fn a_failed_cel_rule_is_an_invalid_value_of_its_node() {
        let schema = json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "properties": {"by": {"type": "object"}, "reason": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "has(self.by) || has(self.reason)", "message": "by or reason"}]
        }}});
        let f = check(&schema, &mut json!({"spec": {}}));
        assert_eq!(
            f.rules,
            vec![
                json!({"reason": "FieldValueInvalid", "message": "Invalid value: \"object\": by or reason", "field": "spec"})
            ]
        );
        assert!(check(&schema, &mut json!({"spec": {"reason": "r"}}))
            .rules
            .is_empty());
    }

    #[test]
    fn wrong_types_missing_required_and_enum_values_are_causes() {
        let mut v = json!({"spec": {"chart": 3, "mode": "C"}});
        let f = check(&schema(), &mut v);
        let fields: Vec<&str> = f
            .causes
            .iter()
            .map(|c| c["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, vec!["spec.chart", "spec.mode"]);
        assert!(f.causes[0]["message"]
            .as_str()
            .unwrap()
            .contains("must be of type string"));
        let mut v = json!({"spec": {}});
        let f = check(&schema(), &mut v);
        assert_eq!(f.causes[0]["field"], "spec.chart");
        assert_eq!(f.causes[0]["reason"], "FieldValueRequired");
    }
}
