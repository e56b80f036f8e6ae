//! Field-level differences between two JSON objects, as paths a reviewer can read:
//! `spec.forProvider.chart.version`, `metadata.labels["hops.ops.com.ai/psql"]`. Lists are
//! compared whole (psql-fleet replaces them whole, values lists included), so a changed
//! list is one change rather than a change per index.

use serde::Serialize;
use serde_json::Value;

/// One field that changes; a side is absent when the field is not set there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<Value>,
}

/// Which keys are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every key of either side: two renders of the fleet.
    Both,
    /// Only the keys the head sets: the head against a live object, which also holds what
    /// the API server and controllers added (status, uid, defaults, annotations).
    HeadKeys,
}

/// The changes from `base` to `head`, sorted by path.
pub fn field_changes(base: &Value, head: &Value, scope: Scope) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk(Some(base), Some(head), String::new(), scope, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(
    base: Option<&Value>,
    head: Option<&Value>,
    path: String,
    scope: Scope,
    out: &mut Vec<FieldChange>,
) {
    match (base, head) {
        (Some(Value::Object(b)), Some(Value::Object(h))) => {
            let mut keys: Vec<&String> = h.keys().collect();
            if scope == Scope::Both {
                keys.extend(b.keys().filter(|k| !h.contains_key(*k)));
            }
            for key in keys {
                walk(b.get(key), h.get(key), join(&path, key), scope, out);
            }
        }
        (Some(b), Some(h)) if same(b, h) => {}
        (None, None) => {}
        (b, h) => out.push(FieldChange {
            path,
            base: b.cloned(),
            head: h.cloned(),
        }),
    }
}

/// Equal values; numbers by value, since a live `3` may come back as `3.0`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", Value::String(key.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_changes_additions_and_removals_are_listed_by_path() {
        let base =
            json!({"spec": {"chart": {"version": "1.18.4"}, "values": {"a": 1, "gone": true}}});
        let head =
            json!({"spec": {"chart": {"version": "1.19.0"}, "values": {"a": 1, "new": [1, 2]}}});
        let changes = field_changes(&base, &head, Scope::Both);
        assert_eq!(
            changes,
            vec![
                FieldChange {
                    path: "spec.chart.version".into(),
                    base: Some(json!("1.18.4")),
                    head: Some(json!("1.19.0")),
                },
                FieldChange {
                    path: "spec.values.gone".into(),
                    base: Some(json!(true)),
                    head: None,
                },
                FieldChange {
                    path: "spec.values.new".into(),
                    base: None,
                    head: Some(json!([1, 2])),
                },
            ]
        );
    }

    #[test]
    fn lists_change_whole_and_keys_with_dots_are_quoted() {
        let base = json!({"metadata": {"labels": {"hops.ops.com.ai/psql": "a"}}, "l": [1, 2, 3]});
        let head = json!({"metadata": {"labels": {"hops.ops.com.ai/psql": "b"}}, "l": [1, 9, 3]});
        let paths: Vec<_> = field_changes(&base, &head, Scope::Both)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(
            paths,
            vec!["l", r#"metadata.labels["hops.ops.com.ai/psql"]"#]
        );
    }

    #[test]
    fn against_live_only_the_heads_keys_count_and_numbers_compare_by_value() {
        let live = json!({"spec": {"rollbackLimit": 3.0, "x": 1}, "status": {"ready": true}});
        let head = json!({"spec": {"rollbackLimit": 3}});
        assert!(field_changes(&live, &head, Scope::HeadKeys).is_empty());
        assert_eq!(field_changes(&live, &head, Scope::Both).len(), 2);
    }
}
