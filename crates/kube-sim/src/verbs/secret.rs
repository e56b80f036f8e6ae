//! The Secret strategy of kube-apiserver: `stringData` is written into `data` (it wins over
//! a `data` key of the same name) and never stored; `type` defaults to `Opaque` and cannot
//! change; keys are config keys, the decoded total is at most 1 MiB, and an `immutable`
//! Secret keeps its data (`ValidateSecret`, `ValidateSecretUpdate`).

use base64::Engine;
use serde_json::{json, Value};

use super::configmap::{cause, config_key_ok, IMMUTABLE, MAX_SIZE};
use crate::status::ApiError;

/// What the API server does to a Secret before storing it: the conversion of `stringData`
/// and the defaulting of `type`.
pub fn prepare(new: &mut Value) {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(strings) = new
        .as_object_mut()
        .and_then(|o| o.remove("stringData"))
        .and_then(|v| v.as_object().cloned())
    {
        let data = &mut new["data"];
        if !data.is_object() {
            *data = json!({});
        }
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            data[key] = Value::String(engine.encode(text));
        }
    }
    if new
        .get("type")
        .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
    {
        new["type"] = json!("Opaque");
    }
}

/// Checks `new` (and, on update, against `old`); the causes of a 422.
pub fn check(name: &str, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut causes = Vec::new();
    let mut size = 0usize;
    for (key, value) in new
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !config_key_ok(key) {
            causes.push(cause(
                format!("data[{key}]"),
                format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                "FieldValueInvalid",
            ));
        }
        match value.as_str().map(|s| engine.decode(s)) {
            Some(Ok(bytes)) => size += bytes.len(),
            _ => causes.push(cause(
                format!("data[{key}]"),
                "Invalid value: not valid base64".into(),
                "FieldValueInvalid",
            )),
        }
    }
    if size > MAX_SIZE {
        causes.push(cause(
            "data".into(),
            format!("Too long: may not be more than {MAX_SIZE} bytes"),
            "FieldValueTooLong",
        ));
    }
    if let Some(old) = old {
        if old["type"] != new["type"] {
            causes.push(cause(
                "type".into(),
                "Invalid value: field is immutable".into(),
                "FieldValueInvalid",
            ));
        }
        if old["immutable"] == json!(true) {
            if new["immutable"] != json!(true) {
                causes.push(cause(
                    "immutable".into(),
                    IMMUTABLE.into(),
                    "FieldValueForbidden",
                ));
            }
            let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
            if old["data"] != new["data"] && !(empty(&old["data"]) && empty(&new["data"])) {
                causes.push(cause(
                    "data".into(),
                    IMMUTABLE.into(),
                    "FieldValueForbidden",
                ));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Secret", "", name, causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_stored_as_data_and_wins_over_it() {
        let mut s = json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "yes"}});
        prepare(&mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "eA==", "b": "eWVz"}, "type": "Opaque"})
        );
        let mut typed = json!({"type": "cluster.x-k8s.io/secret"});
        prepare(&mut typed);
        assert_eq!(typed["type"], "cluster.x-k8s.io/secret");
    }

    #[test]
    fn data_must_be_base64_under_a_mebibyte_decoded() {
        assert!(check("s", None, &json!({"data": {"k": "not base64!"}})).is_err());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SIZE + 1]);
        let e = check("s", None, &json!({"data": {"k": big}})).unwrap_err();
        assert!(e.message.contains("Too long"), "{}", e.message);
    }

    #[test]
    fn the_type_cannot_change_and_immutable_data_stays() {
        let old = json!({"type": "Opaque", "data": {"k": "eA=="}});
        let retyped = json!({"type": "kubernetes.io/tls", "data": {"k": "eA=="}});
        assert!(check("s", Some(&old), &retyped).is_err());
        let locked = json!({"type": "Opaque", "immutable": true, "data": {"k": "eA=="}});
        let changed = json!({"type": "Opaque", "immutable": true, "data": {"k": "eQ=="}});
        let e = check("s", Some(&locked), &changed).unwrap_err();
        assert!(e.message.contains("data: Forbidden"), "{}", e.message);
        assert!(check("s", Some(&old), &changed).is_ok());
    }
}
