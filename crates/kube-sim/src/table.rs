//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): kubectl
//! asks for Tables and prints the columns the server chooses, from the CRD's
//! additionalPrinterColumns for custom resources.

use serde_json::{json, Value};

use super::crds::ResourceType;

/// Whether the Accept header asks for a Table first.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a\.b`, `[n]`, and
/// `[?(@.field=='value')]`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let mut name = String::new();
            let mut chars = r.char_indices().peekable();
            let mut consumed = r.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            name.push(n);
                        }
                    }
                    '.' | '[' => {
                        consumed = i;
                        break;
                    }
                    _ => name.push(c),
                }
            }
            cur = cur.get(&name)?;
            rest = &r[consumed..];
        } else if let Some(r) = rest.strip_prefix("[?(@.") {
            let end = r.find(")]")?;
            let (field, want) = r[..end].split_once("==")?;
            let want = want.trim().trim_matches('\'').trim_matches('"');
            cur = cur
                .as_array()?
                .iter()
                .find(|item| item.get(field.trim()).and_then(Value::as_str) == Some(want))?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            cur = cur.get(r[..end].parse::<usize>().ok()?)?;
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

/// kubectl's short duration form ("45s", "5m12s", "3h", "2d5h").
pub fn human_age(created: &str) -> String {
    let Ok(ts) = created.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn columns(r: &ResourceType) -> Vec<Value> {
    if !r.printer_columns.is_empty() {
        return r.printer_columns.clone();
    }
    let col = |name: &str, path: &str, t: &str| json!({"name": name, "type": t, "jsonPath": path});
    match r.kind.as_str() {
        "Namespace" => vec![
            col("Status", ".status.phase", "string"),
            col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "ConfigMap" => vec![
            col("Data", ".data", "integer"),
            col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "Secret" => vec![
            col("Type", ".type", "string"),
            col("Data", ".data", "integer"),
            col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "Lease" => vec![
            col("Holder", ".spec.holderIdentity", "string"),
            col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "Deployment" => vec![
            col("Ready", ".status.readyReplicas", "string"),
            col("Up-to-date", ".status.updatedReplicas", "integer"),
            col("Available", ".status.availableReplicas", "integer"),
            col("Age", ".metadata.creationTimestamp", "date"),
        ],
        _ => vec![col("Age", ".metadata.creationTimestamp", "date")],
    }
}

fn cell(obj: &Value, col: &Value, kind: &str) -> Value {
    let path = col["jsonPath"].as_str().unwrap_or_default();
    let v = json_path(obj, path);
    // kubectl counts a ConfigMap's entries, both kinds of data, and a Secret's.
    if matches!(kind, "ConfigMap" | "Secret") && col["name"] == "Data" {
        let count = |k: &str| obj.get(k).and_then(Value::as_object).map_or(0, |m| m.len());
        return json!(count("data") + count("binaryData"));
    }
    if kind == "Deployment" && col["name"] == "Ready" {
        let ready = v.and_then(Value::as_i64).unwrap_or(0);
        let want = obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        return Value::String(format!("{ready}/{want}"));
    }
    match (col["type"].as_str(), v) {
        (Some("date"), Some(Value::String(s))) => Value::String(human_age(s)),
        (_, Some(Value::String(s))) => Value::String(s.clone()),
        (Some("integer") | Some("number"), Some(n @ Value::Number(_))) => n.clone(),
        (_, Some(Value::Null)) | (_, None) => Value::Null,
        (_, Some(other)) => Value::String(other.to_string()),
    }
}

/// A Table of `items`; `include_object` is the `includeObject` parameter (default Metadata).
pub fn table(r: &ResourceType, items: &[Value], list_meta: Value, include_object: &str) -> Value {
    let cols = columns(r);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in &cols {
        defs.push(json!({"name": c["name"], "type": c["type"], "format": "", "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0))}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![obj["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|c| cell(obj, c, &r.kind)));
            let object = match include_object {
                "Object" => obj.clone(),
                "None" => Value::Null,
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_handles_filters_and_escaped_dots() {
        let o = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "metadata": {"annotations": {"crossplane.io/usage-details": "d"}}});
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type=='Ready')].status"),
            Some(&json!("True"))
        );
        assert_eq!(
            json_path(&o, ".metadata.annotations.crossplane\\.io/usage-details"),
            Some(&json!("d"))
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            Some(&json!("Synced"))
        );
        assert_eq!(json_path(&o, ".spec.missing"), None);
    }

    #[test]
    fn table_is_asked_for_only_when_first_preference() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
