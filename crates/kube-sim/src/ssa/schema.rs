//! How each part of an object merges: the list and map semantics that server-side apply reads
//! from a CRD's `openAPIV3Schema` (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`, `x-kubernetes-preserve-unknown-fields`), and hand-written fragments
//! for the built-in kinds the simulator serves.
//!
//! Parts a schema does not describe are *deduced* from the value, as structured-merge-diff does:
//! objects are granular maps, lists are atomic, everything else is a leaf.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The merge semantics of one node of an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Scalar,
    /// An object with declared properties. Declared properties are *named* fields (they are not
    /// owned themselves, only their leaves are); `unknown` types any other key.
    Struct {
        fields: BTreeMap<String, Node>,
        unknown: Option<Box<Node>>,
        atomic: bool,
    },
    /// An object whose keys are data (`additionalProperties`, preserve-unknown-fields).
    Map {
        values: Box<Node>,
        atomic: bool,
    },
    List {
        items: Box<Node>,
        kind: ListKind,
    },
    /// Typed by its value. `named` makes object keys behave as declared struct fields, which is
    /// how the built-in kinds' undescribed parts are approximated.
    Deduced {
        named: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListKind {
    Atomic,
    Set,
    /// Items are identified by these key fields, each with the schema default used when an item
    /// omits it (Kubernetes keys ports by `protocol` even when it is defaulted).
    Map {
        keys: Vec<(String, Option<Value>)>,
    },
}

pub(crate) static DEDUCED: Node = Node::Deduced { named: false };
pub(crate) static DEDUCED_NAMED: Node = Node::Deduced { named: true };

impl Node {
    /// The node for key `key` of an object typed by `self`, and whether it is a named field.
    pub(crate) fn field(&self, key: &str) -> (&Node, bool) {
        match self {
            Node::Struct {
                fields, unknown, ..
            } => match fields.get(key) {
                Some(node) => (node, true),
                None => match unknown.as_deref() {
                    Some(node @ Node::Deduced { named }) => (node, *named),
                    Some(node) => (node, false),
                    None => (&DEDUCED, false),
                },
            },
            Node::Map { values, .. } => (values, false),
            Node::Deduced { named: true } => (&DEDUCED_NAMED, true),
            Node::Deduced { named: false } | Node::Scalar | Node::List { .. } => (&DEDUCED, false),
        }
    }
}

/// The merge semantics of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub(crate) root: Node,
    /// Whether the kind serves a `status` subresource, which splits ownership and writes of
    /// `.status` from the rest of the object.
    pub(crate) status_subresource: bool,
}

impl Schema {
    /// Reads a CRD version's `openAPIV3Schema`. `metadata` always gets the standard ObjectMeta
    /// semantics, because Kubernetes ignores what a CRD says about it.
    pub fn from_openapi_v3(schema: &Value) -> Schema {
        Schema {
            root: with_object_meta(convert(schema, false)),
            status_subresource: false,
        }
    }

    /// Reads one entry of a CRD's `spec.versions`: its schema and whether it has a status
    /// subresource.
    pub fn from_crd_version(version: &Value) -> Schema {
        let schema = Schema::from_openapi_v3(&version["schema"]["openAPIV3Schema"]);
        let status = version["subresources"]["status"].is_object();
        schema.with_status_subresource(status)
    }

    /// No schema: maps granular, lists atomic.
    pub fn deduced() -> Schema {
        Schema {
            root: with_object_meta(Node::Deduced { named: false }),
            status_subresource: false,
        }
    }

    pub fn with_status_subresource(mut self, enabled: bool) -> Schema {
        self.status_subresource = enabled;
        self
    }

    pub fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }

    /// The built-in kinds the simulator serves, from hand-written fragments that declare the
    /// associative lists Kubernetes declares for them; their other fields are deduced.
    pub fn builtin(api_version: &str, kind: &str) -> Option<Schema> {
        let (fragment, status) = match (api_version, kind) {
            ("v1", "Namespace") => (namespace_fragment(), true),
            ("v1", "Event") | ("events.k8s.io/v1", "Event") => (json!({"type": "object"}), false),
            ("coordination.k8s.io/v1", "Lease") => (json!({"type": "object"}), false),
            ("apps/v1", "Deployment") => (deployment_fragment(), true),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => (crd_fragment(), true),
            _ => return None,
        };
        Some(Schema {
            root: with_object_meta(convert(&fragment, true)),
            status_subresource: status,
        })
    }
}

/// Converts an OpenAPI v3 node. In `builtin` mode undeclared properties are named fields, because
/// built-in kinds are Go structs whose fields we do not spell out.
fn convert(schema: &Value, builtin: bool) -> Node {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        return Node::Scalar;
    }
    let atomic_map = schema["x-kubernetes-map-type"] == json!("atomic");
    let unknown = if builtin {
        Some(Box::new(Node::Deduced { named: true }))
    } else if preserve {
        Some(Box::new(Node::Deduced { named: false }))
    } else {
        None
    };
    if let Some(properties) = schema["properties"].as_object() {
        let fields = properties
            .iter()
            .map(|(name, child)| (name.clone(), convert(child, builtin)))
            .collect();
        return Node::Struct {
            fields,
            unknown,
            atomic: atomic_map,
        };
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return Node::Map {
            values: Box::new(convert(values, builtin)),
            atomic: atomic_map,
        };
    }
    match schema["type"].as_str() {
        Some("object") => match unknown {
            Some(values) if !builtin => Node::Map {
                values,
                atomic: atomic_map,
            },
            _ if builtin => Node::Deduced { named: true },
            // An object without properties keeps only what a structural schema lets through;
            // treating its keys as data is the closest granular reading.
            _ => Node::Map {
                values: Box::new(Node::Deduced { named: false }),
                atomic: atomic_map,
            },
        },
        Some("array") => Node::List {
            items: Box::new(convert(&schema["items"], builtin)),
            kind: list_kind(schema),
        },
        Some(_) => Node::Scalar,
        None if preserve || builtin => Node::Deduced { named: builtin },
        None => Node::Scalar,
    }
}

fn list_kind(schema: &Value) -> ListKind {
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => ListKind::Set,
        Some("map") => {
            let keys = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(|k| {
                            let default = schema["items"]["properties"][k].get("default").cloned();
                            (k.to_owned(), default)
                        })
                        .collect()
                })
                .unwrap_or_default();
            ListKind::Map { keys }
        }
        // CRD lists without a list type are atomic, as are `atomic` ones.
        _ => ListKind::Atomic,
    }
}

/// Replaces whatever the schema says about `metadata` (and types `apiVersion`/`kind`) with the
/// semantics every Kubernetes object shares.
fn with_object_meta(root: Node) -> Node {
    let (mut fields, unknown, atomic) = match root {
        Node::Struct {
            fields,
            unknown,
            atomic,
        } => (fields, unknown, atomic),
        other => (BTreeMap::new(), Some(Box::new(other)), false),
    };
    fields.insert("apiVersion".to_owned(), Node::Scalar);
    fields.insert("kind".to_owned(), Node::Scalar);
    fields.insert(
        "metadata".to_owned(),
        convert(&object_meta_fragment(), false),
    );
    Node::Struct {
        fields,
        unknown,
        atomic,
    }
}

fn object_meta_fragment() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let scalars = [
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ];
    let mut properties: serde_json::Map<String, Value> = scalars
        .iter()
        .map(|name| ((*name).to_owned(), json!({"type": "string"})))
        .collect();
    properties.insert("labels".to_owned(), string_map.clone());
    properties.insert("annotations".to_owned(), string_map);
    properties.insert(
        "finalizers".to_owned(),
        json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
    );
    properties.insert(
        "ownerReferences".to_owned(),
        json!({
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"],
            "items": {"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "name": {"type": "string"}, "uid": {"type": "string"},
                "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"}
            }}
        }),
    );
    properties.insert(
        "managedFields".to_owned(),
        json!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
    );
    json!({"type": "object", "properties": properties})
}

fn conditions_by_type() -> Value {
    json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
        "items": {"type": "object", "properties": {"type": {"type": "string"}}}
    })
}

fn map_list(keys: &[&str], properties: Value) -> Value {
    json!({
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": keys,
        "items": {"type": "object", "properties": properties}
    })
}

fn namespace_fragment() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "finalizers": {"type": "array", "items": {"type": "string"}}
        }},
        "status": {"type": "object", "properties": {"conditions": conditions_by_type()}}
    }})
}

fn deployment_fragment() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let container = json!({
        "name": {"type": "string"},
        "ports": map_list(&["containerPort", "protocol"], json!({
            "containerPort": {"type": "integer"},
            "protocol": {"type": "string", "default": "TCP"}
        })),
        "env": map_list(&["name"], json!({"name": {"type": "string"}})),
        "volumeMounts": map_list(&["mountPath"], json!({"mountPath": {"type": "string"}}))
    });
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "template": {"type": "object", "properties": {
                "metadata": {"type": "object", "properties": {
                    "labels": string_map.clone(), "annotations": string_map.clone()
                }},
                "spec": {"type": "object", "properties": {
                    "containers": map_list(&["name"], container.clone()),
                    "initContainers": map_list(&["name"], container),
                    "volumes": map_list(&["name"], json!({"name": {"type": "string"}})),
                    "nodeSelector": string_map
                }}
            }}
        }},
        "status": {"type": "object", "properties": {"conditions": conditions_by_type()}}
    }})
}

fn crd_fragment() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "versions": map_list(&["name"], json!({"name": {"type": "string"}}))
        }},
        "status": {"type": "object", "properties": {"conditions": conditions_by_type()}}
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_extensions_become_list_and_map_semantics() {
        let schema = Schema::from_openapi_v3(&json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "policies": {"type": "array", "items": {"type": "string"}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                                 "additionalProperties": {"type": "string"}},
                    "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "port": {"x-kubernetes-int-or-string": true}
                }},
                "status": {"type": "object", "properties": {
                    "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["type"],
                                   "items": {"type": "object", "properties": {"type": {"type": "string"}}}}
                }}
            }
        }));
        let (spec, named) = schema.root.field("spec");
        assert!(named);
        assert!(matches!(
            spec.field("policies").0,
            Node::List {
                kind: ListKind::Atomic,
                ..
            }
        ));
        assert!(matches!(
            spec.field("tags").0,
            Node::List {
                kind: ListKind::Set,
                ..
            }
        ));
        assert!(matches!(
            spec.field("selector").0,
            Node::Map { atomic: true, .. }
        ));
        assert!(matches!(spec.field("port").0, Node::Scalar));
        let (values, _) = spec.field("values");
        assert!(matches!(values, Node::Map { atomic: false, .. }));
        assert_eq!(values.field("anything"), (&DEDUCED, false));
        let (status, _) = schema.root.field("status");
        let Node::List {
            kind: ListKind::Map { keys },
            ..
        } = status.field("conditions").0
        else {
            panic!("conditions should be an associative list");
        };
        assert_eq!(keys, &[("type".to_owned(), None)]);
    }

    #[test]
    fn metadata_semantics_do_not_depend_on_the_crd() {
        let schema = Schema::from_openapi_v3(&json!({
            "type": "object", "properties": {"metadata": {"type": "object"}}
        }));
        let (meta, _) = schema.root.field("metadata");
        assert!(matches!(
            meta.field("labels"),
            (Node::Map { atomic: false, .. }, true)
        ));
        assert!(matches!(
            meta.field("finalizers").0,
            Node::List {
                kind: ListKind::Set,
                ..
            }
        ));
        assert!(matches!(
            meta.field("ownerReferences").0,
            Node::List {
                kind: ListKind::Map { .. },
                ..
            }
        ));
        assert_eq!(meta, Schema::deduced().root.field("metadata").0);
    }

    #[test]
    fn builtin_kinds_declare_their_associative_lists() {
        let deployment = Schema::builtin("apps/v1", "Deployment").unwrap();
        assert!(deployment.has_status_subresource());
        let containers = deployment
            .root
            .field("spec")
            .0
            .field("template")
            .0
            .field("spec")
            .0
            .field("containers")
            .0;
        assert!(matches!(
            containers,
            Node::List {
                kind: ListKind::Map { .. },
                ..
            }
        ));
        assert!(Schema::builtin("v1", "Event").is_some());
        assert!(Schema::builtin("v1", "Pod").is_none());
    }
}
