//! Who else wrote an object: the other field managers of its `metadata.managedFields`, kept
//! compactly (manager, time, the field paths it owns), so that drift can say who made it.
//! The status subresource is left out: controllers own it by design, and a drift is never
//! found there.

use serde::Serialize;
use serde_json::{Map, Value};

/// The field manager psql-fleet applies as.
pub const FIELD_MANAGER: &str = "psql-fleet";

/// A field manager other than psql-fleet, and when it last wrote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Writer {
    pub manager: String,
    /// RFC 3339, as the API server recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The bounded `manager` label of the drift metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ManagerKind {
    Kubectl,
    Helm,
    Other,
    /// Nobody can be named: a deleted object, or no managed fields on the drifted paths.
    Unknown,
}

impl ManagerKind {
    pub const ALL: [ManagerKind; 4] = [Self::Kubectl, Self::Helm, Self::Other, Self::Unknown];

    pub fn of(writer: Option<&Writer>) -> ManagerKind {
        match writer.map(|w| w.manager.as_str()) {
            None => Self::Unknown,
            Some(m) if m.starts_with("kubectl") => Self::Kubectl,
            Some(m) if m.starts_with("helm") => Self::Helm,
            Some(_) => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubectl => "kubectl",
            Self::Helm => "helm",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }
}

/// One other manager's part of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldWriter {
    pub writer: Writer,
    /// Field paths as drift names them (`spec.rollbackLimit`); a list is owned as a whole.
    pub fields: Vec<String>,
}

/// Whether a `managedFields` entry is another writer's (read by [`other_writers`]): not
/// psql-fleet's own, and not a subresource's (a provider writing status).
pub fn is_other_writer(manager: &str, subresource: Option<&str>) -> bool {
    manager != FIELD_MANAGER && subresource.is_none_or(str::is_empty)
}

/// The managers of `managed_fields` (the `metadata.managedFields` array) other than
/// psql-fleet, without their status subresource entries.
pub fn other_writers(managed_fields: &Value) -> Vec<FieldWriter> {
    let Some(entries) = managed_fields.as_array() else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            field_writer(
                entry.get("manager").and_then(Value::as_str)?,
                entry.get("subresource").and_then(Value::as_str),
                entry.get("time").and_then(Value::as_str),
                entry.get("fieldsV1").and_then(Value::as_object),
            )
        })
        .collect()
}

/// One `managedFields` entry as a writer of fields outside the status, when it is another
/// writer's (see [`is_other_writer`]).
pub fn field_writer(
    manager: &str,
    subresource: Option<&str>,
    time: Option<&str>,
    fields_v1: Option<&Map<String, Value>>,
) -> Option<FieldWriter> {
    if !is_other_writer(manager, subresource) {
        return None;
    }
    let mut fields = Vec::new();
    if let Some(set) = fields_v1 {
        paths(set, "", &mut fields);
    }
    fields.retain(|f| f != "status" && !f.starts_with("status."));
    fields.sort();
    fields.dedup();
    (!fields.is_empty()).then(|| FieldWriter {
        writer: Writer {
            manager: manager.to_string(),
            time: time.map(String::from),
        },
        fields,
    })
}

/// The leaf paths of a `fieldsV1` set. `f:<name>` is a field; a list item (`k:`, `v:`,
/// `i:`) stands for its whole list, since drift names items by index and the set by key.
fn paths(set: &Map<String, Value>, path: &str, out: &mut Vec<String>) {
    let mut leaf = true;
    for (key, child) in set {
        if key == "." {
            continue;
        }
        leaf = false;
        let Some(name) = key.strip_prefix("f:") else {
            if !path.is_empty() {
                out.push(path.to_string());
            }
            continue;
        };
        let child_path = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        match child.as_object() {
            Some(grandchildren) => paths(grandchildren, &child_path, out),
            None => out.push(child_path),
        }
    }
    if leaf && !path.is_empty() {
        out.push(path.to_string());
    }
}

/// Whether one path is the other or lies inside it.
fn overlap(a: &str, b: &str) -> bool {
    let inside = |long: &str, short: &str| {
        long.strip_prefix(short)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    };
    inside(a, b) || inside(b, a)
}

/// Of `writers`, the one that wrote last among those owning any of `fields`.
pub fn last_writer_of(writers: &[FieldWriter], fields: &[String]) -> Option<Writer> {
    writers
        .iter()
        .filter(|w| {
            w.fields
                .iter()
                .any(|owned| fields.iter().any(|f| overlap(owned, f)))
        })
        .map(|w| &w.writer)
        .max_by(|a, b| a.time.cmp(&b.time))
        .cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn managed() -> Value {
        json!([
            {"manager": "psql-fleet", "operation": "Apply", "time": "2026-12-03T10:00:00Z",
             "fieldsV1": {"f:spec": {"f:rollbackLimit": {}, "f:forProvider": {"f:values": {"f:deploy": {"f:operator": {}}}}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-12-03T11:00:00Z",
             "fieldsV1": {"f:spec": {"f:forProvider": {"f:values": {"f:deploy": {"f:restapi": {}}}}}}},
            {"manager": "kubectl", "operation": "Apply", "time": "2026-12-03T12:00:00Z",
             "fieldsV1": {"f:spec": {"f:rollbackLimit": {}, "f:managementPolicies": {".": {}, "v:\"*\"": {}}}}},
            {"manager": "crossplane-provider-helm", "operation": "Update", "subresource": "status",
             "time": "2026-12-03T12:30:00Z", "fieldsV1": {"f:status": {"f:conditions": {}}}},
            {"manager": "helm-controller", "operation": "Update", "time": "2026-12-03T09:00:00Z",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:note": {}}}}}
        ])
    }

    #[test]
    fn other_managers_are_kept_with_their_field_paths_and_psql_fleet_and_status_are_not() {
        let writers = other_writers(&managed());
        let names: Vec<(&str, &[String])> = writers
            .iter()
            .map(|w| (w.writer.manager.as_str(), w.fields.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "kubectl-edit",
                    &["spec.forProvider.values.deploy.restapi".to_string()][..]
                ),
                (
                    "kubectl",
                    &[
                        "spec.managementPolicies".to_string(),
                        "spec.rollbackLimit".to_string()
                    ][..]
                ),
                (
                    "helm-controller",
                    &["metadata.annotations.note".to_string()][..]
                ),
            ]
        );
        assert_eq!(
            writers[0].writer.time.as_deref(),
            Some("2026-12-03T11:00:00Z")
        );
        assert!(other_writers(&json!(null)).is_empty());
    }

    #[test]
    fn a_drifted_field_is_put_on_the_manager_that_owns_it_the_latest_first() {
        let writers = other_writers(&managed());
        let who = |fields: &[&str]| {
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            last_writer_of(&writers, &fields).map(|w| w.manager)
        };
        assert_eq!(who(&["spec.rollbackLimit"]).as_deref(), Some("kubectl"));
        assert_eq!(
            who(&["spec.forProvider.values.deploy.restapi"]).as_deref(),
            Some("kubectl-edit")
        );
        // A list is owned whole: an item's path is inside it.
        assert_eq!(
            who(&["spec.managementPolicies[0]"]).as_deref(),
            Some("kubectl")
        );
        // Both: the later one.
        assert_eq!(
            who(&[
                "spec.forProvider.values.deploy.restapi",
                "spec.rollbackLimit"
            ])
            .as_deref(),
            Some("kubectl")
        );
        // A parent that drifted as a whole (a map replaced) is inside no one's path but
        // holds theirs.
        assert_eq!(
            who(&["spec.forProvider.values"]).as_deref(),
            Some("kubectl-edit")
        );
        // psql-fleet's own fields, and prefixes that are not path boundaries, name no one.
        assert_eq!(who(&["spec.forProvider.values.deploy.operator"]), None);
        assert_eq!(who(&["spec.rollback"]), None);
    }

    #[test]
    fn the_metric_label_is_one_of_four() {
        let w = |m: &str| Writer {
            manager: m.into(),
            time: None,
        };
        assert_eq!(
            ManagerKind::of(Some(&w("kubectl-edit"))).as_str(),
            "kubectl"
        );
        assert_eq!(
            ManagerKind::of(Some(&w("kubectl-client-side-apply"))).as_str(),
            "kubectl"
        );
        assert_eq!(ManagerKind::of(Some(&w("helm"))).as_str(), "helm");
        assert_eq!(
            ManagerKind::of(Some(&w("argocd-controller"))).as_str(),
            "other"
        );
        assert_eq!(ManagerKind::of(None).as_str(), "unknown");
    }
}
