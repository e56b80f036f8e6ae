//! `metadata.managedFields`: reading and writing the entries, one per manager identity, in the
//! order and shape the API server stores them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::fieldset::{FieldSet, PathElement};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// What makes two entries the same manager. Kubernetes leaves the API version out for appliers
/// (an applier keeps one entry across versions) but keeps it for updaters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ManagerKey {
    pub manager: String,
    pub operation: Operation,
    pub update_api_version: Option<String>,
    pub subresource: Option<String>,
}

impl ManagerKey {
    pub(crate) fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> ManagerKey {
        ManagerKey {
            manager: manager.to_owned(),
            operation,
            update_api_version: (operation == Operation::Update).then(|| api_version.to_owned()),
            subresource: subresource.filter(|s| !s.is_empty()).map(str::to_owned),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub api_version: String,
    pub time: Option<String>,
    pub fields: FieldSet,
}

/// All managers of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ManagedFields(pub BTreeMap<ManagerKey, Entry>);

impl ManagedFields {
    /// Reads `metadata.managedFields`. Entries of another `fieldsType` or without a manager are
    /// skipped; same-identity entries (which a hand-written list may hold) are unioned.
    pub(crate) fn decode(object: &Value) -> ManagedFields {
        let mut out = ManagedFields::default();
        let entries = object["metadata"]["managedFields"].as_array();
        for entry in entries.into_iter().flatten() {
            let Some(manager) = entry["manager"].as_str() else {
                continue;
            };
            let operation = match entry["operation"].as_str() {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                _ => continue,
            };
            if entry["fieldsType"]
                .as_str()
                .is_some_and(|t| t != "FieldsV1")
            {
                continue;
            }
            let api_version = entry["apiVersion"].as_str().unwrap_or_default();
            let key = ManagerKey::new(
                manager,
                operation,
                api_version,
                entry["subresource"].as_str(),
            );
            let fields = FieldSet::from_fields_v1(&entry["fieldsV1"]);
            let time = entry["time"].as_str().map(str::to_owned);
            let merged = match out.0.remove(&key) {
                Some(previous) => Entry {
                    fields: previous.fields.union(&fields),
                    ..previous
                },
                None => Entry {
                    api_version: api_version.to_owned(),
                    time,
                    fields,
                },
            };
            out.0.insert(key, merged);
        }
        out
    }

    /// The `managedFields` array, sorted as the API server sorts it: by operation, time,
    /// manager, API version, subresource. Entries that own nothing are dropped.
    pub(crate) fn encode(&self) -> Value {
        let mut entries: Vec<(&ManagerKey, &Entry)> = self
            .0
            .iter()
            .filter(|(_, entry)| !entry.fields.is_empty())
            .collect();
        entries.sort_by(|(ka, ea), (kb, eb)| {
            (
                ka.operation,
                &ea.time,
                &ka.manager,
                &ea.api_version,
                &ka.subresource,
            )
                .cmp(&(
                    kb.operation,
                    &eb.time,
                    &kb.manager,
                    &eb.api_version,
                    &kb.subresource,
                ))
        });
        let encoded = entries
            .into_iter()
            .map(|(key, entry)| {
                let mut out = Map::new();
                out.insert("manager".to_owned(), json!(key.manager));
                out.insert("operation".to_owned(), json!(key.operation.as_str()));
                out.insert("apiVersion".to_owned(), json!(entry.api_version));
                if let Some(time) = &entry.time {
                    out.insert("time".to_owned(), json!(time));
                }
                out.insert("fieldsType".to_owned(), json!("FieldsV1"));
                out.insert("fieldsV1".to_owned(), entry.fields.to_fields_v1());
                if let Some(subresource) = &key.subresource {
                    out.insert("subresource".to_owned(), json!(subresource));
                }
                Value::Object(out)
            })
            .collect();
        Value::Array(encoded)
    }

    pub(crate) fn drop_empty(&mut self) {
        self.0.retain(|_, entry| !entry.fields.is_empty());
    }
}

/// Writes `managed` into `object.metadata.managedFields`, removing the key when nobody manages
/// anything (as the server does).
pub(crate) fn store(object: &mut Value, managed: &ManagedFields) {
    let encoded = managed.encode();
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let empty = encoded.as_array().is_none_or(Vec::is_empty);
    if empty && !root.contains_key("metadata") {
        return;
    }
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    if empty {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".to_owned(), encoded);
    }
}

/// A copy of `object` without `metadata.managedFields`, which ownership never covers.
pub(crate) fn without_managed_fields(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    out
}

/// Fields the server sets itself and nobody owns, removed from every manager's set. Kubernetes
/// strips the exact paths (the `metadata` struct itself too), not what lies below them.
pub(crate) fn untracked() -> FieldSet {
    let mut set = FieldSet::new();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[PathElement::Field(top.to_owned())]);
    }
    for meta in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "selfLink",
        "clusterName",
        "managedFields",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        set.insert(&[
            PathElement::Field("metadata".to_owned()),
            PathElement::Field(meta.to_owned()),
        ]);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_server_order_and_empty_ones_are_dropped() {
        let object = json!({"metadata": {"managedFields": [
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:x": {}}}},
            {"manager": "a", "operation": "Update", "apiVersion": "v1", "time": "2024-01-02T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:y": {}}}, "subresource": "status"},
            {"manager": "z", "operation": "Apply", "apiVersion": "v1", "time": "2024-01-03T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:z": {}}}},
            {"manager": "empty", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {}}
        ]}});
        let managed = ManagedFields::decode(&object);
        let encoded = managed.encode();
        let managers: Vec<&str> = encoded
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["z", "b", "a"]);
        assert_eq!(encoded[2]["subresource"], "status");
        assert_eq!(encoded[0]["fieldsV1"], json!({"f:spec": {"f:z": {}}}));
    }

    #[test]
    fn appliers_keep_one_entry_across_versions_but_updaters_do_not() {
        let a1 = ManagerKey::new("m", Operation::Apply, "g/v1", None);
        let a2 = ManagerKey::new("m", Operation::Apply, "g/v2", None);
        let u1 = ManagerKey::new("m", Operation::Update, "g/v1", None);
        let u2 = ManagerKey::new("m", Operation::Update, "g/v2", None);
        assert_eq!(a1, a2);
        assert_ne!(u1, u2);
        assert_ne!(a1, u1);
        assert_ne!(
            u1,
            ManagerKey::new("m", Operation::Update, "g/v1", Some("status"))
        );
    }
}
