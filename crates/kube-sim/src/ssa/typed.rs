//! Walking a value together with its [`Node`]: which fields a value sets (an applier's claim),
//! and which fields changed between two values (what an update takes ownership of).

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::{FieldSet, PathElement};
use super::schema::{ListKind, Node};

/// How a value is merged and owned at one node.
pub(crate) enum Shape<'s> {
    /// Owned and replaced whole: scalars, atomic lists and maps, and values whose JSON type does
    /// not match the schema (the server validates those; ownership just treats them as leaves).
    Leaf,
    Map(&'s Node),
    List(&'s Node, &'s ListKind),
}

pub(crate) fn shape<'s>(node: &'s Node, value: &Value) -> Shape<'s> {
    match (node, value) {
        (Node::Struct { atomic: false, .. }, Value::Object(_))
        | (Node::Map { atomic: false, .. }, Value::Object(_))
        | (Node::Deduced { .. }, Value::Object(_)) => Shape::Map(node),
        (Node::List { items, kind }, Value::Array(_)) if *kind != ListKind::Atomic => {
            Shape::List(items, kind)
        }
        _ => Shape::Leaf,
    }
}

/// The path element of a granular list's item. Items of an associative list that carry none of
/// the key fields have no identity; they fall back to their position so nothing is lost.
pub(crate) fn item_element(kind: &ListKind, index: usize, item: &Value) -> PathElement {
    match kind {
        ListKind::Set => PathElement::value(item),
        ListKind::Map { keys } => {
            let fields: Vec<(String, Value)> = keys
                .iter()
                .filter_map(|(name, default)| {
                    let value = item.get(name).cloned().or_else(|| default.clone())?;
                    Some((name.clone(), value))
                })
                .collect();
            if fields.is_empty() {
                PathElement::Index(index)
            } else {
                PathElement::key(fields)
            }
        }
        ListKind::Atomic => PathElement::Index(index),
    }
}

/// Items of a granular list with their elements, first occurrence winning on duplicates (the
/// server rejects duplicates in what it is sent; live objects may still hold them).
pub(crate) fn indexed_items<'v>(
    kind: &ListKind,
    items: &'v [Value],
) -> Vec<(PathElement, &'v Value)> {
    let mut seen = std::collections::BTreeSet::new();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (item_element(kind, i, item), item))
        .filter(|(pe, _)| seen.insert(pe.clone()))
        .collect()
}

/// The fields `value` sets, as structured-merge-diff's `ToFieldSet`: leaves, list items, atomic
/// values, empty or null map entries, and entries of maps whose keys are data.
pub(crate) fn to_field_set(node: &Node, value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set(node, value, &mut Vec::new(), &mut set);
    set
}

fn walk_set(node: &Node, value: &Value, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    match shape(node, value) {
        Shape::Leaf => set.insert(path),
        Shape::Map(node) => {
            let Value::Object(object) = value else { return };
            for (key, child) in object {
                let (child_node, named) = node.field(key);
                path.push(PathElement::Field(key.clone()));
                walk_set(child_node, child, path, set);
                let empty_object = child.as_object().is_some_and(|o| o.is_empty());
                if child.is_null() || empty_object || !named {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Shape::List(items_node, kind) => {
            let Value::Array(items) = value else { return };
            for (pe, item) in indexed_items(kind, items) {
                path.push(pe);
                walk_set(items_node, item, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// Fields added, changed and removed between two versions of an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified: what a writer takes from other managers.
    pub(crate) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub(crate) fn without_prefix(&self, prefix: &[PathElement]) -> Comparison {
        Comparison {
            added: self.added.without_prefix(prefix),
            modified: self.modified.without_prefix(prefix),
            removed: self.removed.without_prefix(prefix),
        }
    }
}

pub(crate) fn compare(node: &Node, lhs: &Value, rhs: &Value) -> Comparison {
    let mut out = Comparison::default();
    walk_compare(node, Some(lhs), Some(rhs), &mut Vec::new(), &mut out);
    out
}

fn walk_compare(
    node: &Node,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let granular = |v: Option<&Value>| v.map(|v| !matches!(shape(node, v), Shape::Leaf));
    match (granular(lhs), granular(rhs)) {
        // Both sides granular, or one granular and the other absent: descend.
        (Some(true), Some(true)) | (Some(true), None) | (None, Some(true)) => {
            compare_children(node, lhs, rhs, path, out);
            if !path.is_empty() {
                if lhs.is_none() {
                    out.added.insert(path);
                } else if rhs.is_none() {
                    out.removed.insert(path);
                }
            }
        }
        _ => match (lhs, rhs) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            (Some(l), Some(r)) if l != r => out.modified.insert(path),
            _ => {}
        },
    }
}

fn compare_children(
    node: &Node,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let any = lhs.or(rhs);
    let Some(any) = any else { return };
    match shape(node, any) {
        Shape::Leaf => {}
        Shape::Map(node) => {
            let empty = serde_json::Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for key in keys {
                let (child, _) = node.field(key);
                path.push(PathElement::Field(key.clone()));
                walk_compare(child, l.get(key), r.get(key), path, out);
                path.pop();
            }
        }
        Shape::List(items_node, kind) => {
            let none: Vec<Value> = Vec::new();
            let l = indexed_items(kind, lhs.and_then(Value::as_array).unwrap_or(&none));
            let r = indexed_items(kind, rhs.and_then(Value::as_array).unwrap_or(&none));
            let l_index: BTreeMap<&PathElement, &Value> =
                l.iter().map(|(pe, v)| (pe, *v)).collect();
            let r_index: BTreeMap<&PathElement, &Value> =
                r.iter().map(|(pe, v)| (pe, *v)).collect();
            let mut elements: Vec<&PathElement> = l.iter().map(|(pe, _)| pe).collect();
            elements.extend(
                r.iter()
                    .map(|(pe, _)| pe)
                    .filter(|pe| !l_index.contains_key(pe)),
            );
            for pe in elements {
                path.push(pe.clone());
                walk_compare(
                    items_node,
                    l_index.get(pe).copied(),
                    r_index.get(pe).copied(),
                    path,
                    out,
                );
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssa::schema::Schema;
    use serde_json::json;

    fn printed(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(ToString::to_string).collect()
    }

    fn release_like() -> Schema {
        Schema::from_openapi_v3(&json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "policies": {"type": "array", "items": {"type": "string"}},
                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "version": {"type": "string"}
            }},
            "status": {"type": "object", "properties": {
                "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {
                        "type": {"type": "string"}, "status": {"type": "string"}}}}
            }}
        }}))
    }

    #[test]
    fn an_applied_configuration_owns_leaves_items_and_data_keys_but_not_named_parents() {
        let cases = [
            (json!({"spec": {"version": "1"}}), vec![".spec.version"]),
            (
                json!({"spec": {"policies": ["a", "b"]}}),
                vec![".spec.policies"],
            ),
            (json!({"spec": {}}), vec![".spec"]),
            (
                json!({"spec": {"values": {"a": {"b": 1}}}}),
                vec![".spec.values.a", ".spec.values.a.b"],
            ),
            (
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                vec![
                    r#".status.conditions[type="Ready"]"#,
                    r#".status.conditions[type="Ready"].status"#,
                    r#".status.conditions[type="Ready"].type"#,
                ],
            ),
            (
                json!({"metadata": {"labels": {"app": "x"}, "finalizers": ["f"]}}),
                vec![r#".metadata.finalizers[="f"]"#, ".metadata.labels.app"],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                printed(&to_field_set(&release_like().root, &value)),
                want,
                "{value}"
            );
        }
    }

    #[test]
    fn a_comparison_sorts_changes_into_added_modified_and_removed() {
        let schema = release_like();
        let before = json!({"spec": {"version": "1", "policies": ["a"], "values": {"x": 1}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}]}});
        let after = json!({"spec": {"version": "2", "policies": ["a", "b"], "values": {"y": {"z": 1}}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let cmp = compare(&schema.root, &before, &after);
        assert_eq!(
            printed(&cmp.modified),
            [
                ".spec.policies",
                ".spec.version",
                r#".status.conditions[type="Ready"].status"#
            ]
        );
        assert_eq!(printed(&cmp.added), [".spec.values.y", ".spec.values.y.z"]);
        assert_eq!(
            printed(&cmp.removed),
            [
                ".spec.values.x",
                r#".status.conditions[type="Synced"]"#,
                r#".status.conditions[type="Synced"].status"#,
                r#".status.conditions[type="Synced"].type"#,
            ]
        );
    }

    #[test]
    fn keys_fall_back_to_schema_defaults_and_then_to_the_position() {
        let kind = ListKind::Map {
            keys: vec![
                ("port".to_owned(), None),
                ("protocol".to_owned(), Some(json!("TCP"))),
            ],
        };
        assert_eq!(
            item_element(&kind, 0, &json!({"port": 80})).to_fields_v1_key(),
            r#"k:{"port":80,"protocol":"TCP"}"#
        );
        assert_eq!(
            item_element(
                &ListKind::Map {
                    keys: vec![("name".to_owned(), None)]
                },
                2,
                &json!({})
            ),
            PathElement::Index(2)
        );
    }

    #[test]
    fn builtin_deployments_key_containers_by_name_and_ports_by_port_and_protocol() {
        let schema = Schema::builtin("apps/v1", "Deployment").unwrap();
        let deployment = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "operator", "image": "x", "ports": [{"containerPort": 8080}]}
        ]}}}});
        let fields = to_field_set(&schema.root, &deployment).to_fields_v1();
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"],
            json!({r#"k:{"name":"operator"}"#: {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {r#"k:{"containerPort":8080,"protocol":"TCP"}"#: {".": {}, "f:containerPort": {}}}
            }})
        );
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn without_a_schema_every_object_key_is_data_and_lists_are_atomic() {
        let value = json!({"spec": {"replicas": 1, "list": [{"a": 1}]}});
        assert_eq!(
            printed(&to_field_set(&Schema::deduced().root, &value)),
            [".spec", ".spec.list", ".spec.replicas"]
        );
    }
}
