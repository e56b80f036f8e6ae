//! The ConfigMap strategy's validation (`ValidateConfigMap` and
//! `ValidateConfigMapUpdate` in kube-apiserver): keys are config keys, a key is not in
//! both `data` and `binaryData`, the total size is at most 1 MiB (etcd's request limit
//! with room for metadata), and an `immutable` ConfigMap keeps its data and stays
//! immutable.

use base64::Engine;
use serde_json::{json, Value};

use crate::status::ApiError;

/// `corevalidation.MaxSecretSize`, which ConfigMaps share.
pub const MAX_SIZE: usize = 1024 * 1024;

pub(super) const IMMUTABLE: &str = "Forbidden: field is immutable when `immutable` is set";

pub(super) fn config_key_ok(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && !key.starts_with("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn cause(field: String, message: String, reason: &str) -> Value {
    json!({"reason": reason, "message": message, "field": field})
}

/// Checks `new` (and, on update, against `old`); the causes of a 422.
pub fn check(name: &str, old: Option<&Value>, new: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let mut size = 0usize;
    let data = new.get("data").and_then(Value::as_object);
    let binary = new.get("binaryData").and_then(Value::as_object);
    for (key, value) in data.into_iter().flatten() {
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary.into_iter().flatten() {
        // Sized as the decoded bytes, which is what the Go struct holds.
        let bytes = value
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .map_or(0, |b| b.len());
        size += key.len() + bytes;
        if data.is_some_and(|d| d.contains_key(key)) {
            causes.push(cause(
                format!("data[{key}]"),
                format!("Invalid value: {key:?}: duplicate of key present in binaryData"),
                "FieldValueInvalid",
            ));
        }
    }
    for (field, map) in [("data", data), ("binaryData", binary)] {
        for key in map.into_iter().flatten().map(|(k, _)| k) {
            if !config_key_ok(key) {
                causes.push(cause(
                    format!("{field}[{key}]"),
                    format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                    "FieldValueInvalid",
                ));
            }
        }
    }
    if size > MAX_SIZE {
        causes.push(cause(
            "[]".into(),
            format!("Too long: may not be more than {MAX_SIZE} bytes"),
            "FieldValueTooLong",
        ));
    }
    if let Some(old) = old.filter(|o| o["immutable"] == json!(true)) {
        if new["immutable"] != json!(true) {
            causes.push(cause(
                "immutable".into(),
                IMMUTABLE.into(),
                "FieldValueForbidden",
            ));
        }
        for field in ["data", "binaryData"] {
            let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
            let same = old[field] == new[field] || (empty(&old[field]) && empty(&new[field]));
            if !same {
                causes.push(cause(field.into(), IMMUTABLE.into(), "FieldValueForbidden"));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("ConfigMap", "", name, causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_a_mebibyte_of_data_is_refused_and_just_under_is_not() {
        let at = |n: usize| json!({"data": {"k": "x".repeat(n)}});
        assert!(check("a", None, &at(MAX_SIZE - 1)).is_ok());
        let e = check("a", None, &at(MAX_SIZE)).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("Too long"), "{}", e.message);
    }

    #[test]
    fn binary_data_counts_decoded_and_may_not_repeat_a_data_key() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_SIZE - 2]);
        assert!(check("a", None, &json!({"binaryData": {"k": b64.clone()}})).is_ok());
        let e = check(
            "a",
            None,
            &json!({"data": {"k": "v"}, "binaryData": {"k": b64}}),
        )
        .unwrap_err();
        assert!(e.message.contains("duplicate of key"), "{}", e.message);
    }

    #[test]
    fn bad_keys_are_named() {
        let e = check("a", None, &json!({"data": {"a/b": "v"}})).unwrap_err();
        assert!(e.message.contains("data[a/b]"), "{}", e.message);
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data_and_stays_immutable() {
        let old = json!({"immutable": true, "data": {"k": "v"}});
        assert!(check("a", Some(&old), &old.clone()).is_ok());
        let changed = json!({"immutable": true, "data": {"k": "w"}});
        let e = check("a", Some(&old), &changed).unwrap_err();
        assert!(e.message.contains("data: Forbidden"), "{}", e.message);
        let unlocked = json!({"data": {"k": "v"}});
        let e = check("a", Some(&old), &unlocked).unwrap_err();
        assert!(e.message.contains("immutable: Forbidden"), "{}", e.message);
        let mutable = json!({"data": {"k": "v"}});
        assert!(check("a", Some(&mutable), &changed).is_ok());
    }
}
