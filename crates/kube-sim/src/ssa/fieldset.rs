//! Field paths and sets of them, and their `FieldsV1` encoding in `metadata.managedFields`.
//!
//! A [`FieldSet`] mirrors structured-merge-diff's `fieldpath.Set`: *members* are paths owned
//! themselves, *children* hold deeper paths. A path can be both (an associative-list item and its
//! fields), which `FieldsV1` writes as `".": {}` next to the children.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The variant order is the order structured-merge-diff sorts them in:
/// fields, then associative-list keys, then set values, then indices.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key: `f:<name>`.
    Field(String),
    /// An associative-list item, held as the canonical JSON of its key fields sorted by name:
    /// `k:{"type":"Ready"}`.
    Key(String),
    /// A set-list item, held as its JSON: `v:"finalizer.example.com"`.
    Value(String),
    /// A list position: `i:0`. Kubernetes only uses it for granular lists without keys, which
    /// CRDs cannot declare, so it is parsed but never produced here.
    Index(usize),
}

impl PathElement {
    /// Builds an associative-list key element from `(name, value)` pairs in any order.
    pub fn key(fields: impl IntoIterator<Item = (String, Value)>) -> PathElement {
        // BTreeMap gives the sorted key order Kubernetes emits.
        let sorted: BTreeMap<String, Value> = fields.into_iter().collect();
        let object: Map<String, Value> = sorted.into_iter().collect();
        PathElement::Key(Value::Object(object).to_string())
    }

    pub fn value(item: &Value) -> PathElement {
        PathElement::Value(item.to_string())
    }

    /// The `FieldsV1` object key for this element.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    pub fn from_fields_v1_key(key: &str) -> Option<PathElement> {
        let (prefix, rest) = key.split_once(':')?;
        match prefix {
            "f" => Some(PathElement::Field(rest.to_owned())),
            "k" => {
                // Re-encode so keys written by other servers compare equal to ours.
                let parsed: Map<String, Value> = serde_json::from_str(rest).ok()?;
                Some(PathElement::key(parsed))
            }
            "v" => {
                let parsed: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::value(&parsed))
            }
            "i" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }
}

impl fmt::Display for PathElement {
    /// The form Kubernetes prints in conflict messages: `.name`, `[type="Ready"]`, `[="v"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let parsed: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => write!(f, "[={json}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path from the object root.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path of plain field names, e.g. `Path::fields(&["spec", "forProvider"])`.
    pub fn fields(names: &[&str]) -> Path {
        Path(
            names
                .iter()
                .map(|n| PathElement::Field((*n).to_owned()))
                .collect(),
        )
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

/// A set of paths, stored as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `element` is a member of this (sub)set.
    pub fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The paths below `element`, if any.
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Whether `element` or anything below it is in the set.
    pub fn touches(&self, element: &PathElement) -> bool {
        self.members.contains(element) || self.children.contains_key(element)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` that are not in `other` (exact paths, not prefixes).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Drops `prefix` and everything below it, the way Kubernetes filters reset fields such as
    /// `.status` out of ownership.
    pub fn without_prefix(&self, prefix: &[PathElement]) -> FieldSet {
        let mut out = self.clone();
        out.remove_prefix(prefix);
        out
    }

    fn remove_prefix(&mut self, prefix: &[PathElement]) {
        match prefix {
            [] => *self = FieldSet::default(),
            [last] => {
                self.members.remove(last);
                self.children.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_prefix(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Every member path, in structured-merge-diff's order (a path before its descendants).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        let elements: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in elements {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(Path(prefix.clone()));
            }
            if let Some(child) = self.children.get(pe) {
                child.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        self.encode(false)
    }

    fn encode(&self, include_self: bool) -> Value {
        let mut object = Map::new();
        if include_self {
            object.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for pe in &self.members {
            if !self.children.contains_key(pe) {
                object.insert(pe.to_fields_v1_key(), Value::Object(Map::new()));
            }
        }
        for (pe, child) in &self.children {
            let is_member = self.members.contains(pe);
            object.insert(pe.to_fields_v1_key(), child.encode(is_member));
        }
        Value::Object(object)
    }

    /// Parses a `fieldsV1` object. Unknown keys are skipped rather than failing the write: the
    /// worst outcome is that a manager loses ownership of a field it cannot express.
    pub fn from_fields_v1(fields: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(object) = fields.as_object() else {
            return set;
        };
        for (key, child) in object {
            let Some(pe) = PathElement::from_fields_v1_key(key) else {
                continue;
            };
            let child_object = child.as_object();
            let has_dot = child_object.is_some_and(|o| o.contains_key("."));
            let has_children = child_object.is_some_and(|o| o.keys().any(|k| k != "."));
            if has_dot || !has_children {
                set.members.insert(pe.clone());
            }
            if has_children {
                let parsed = FieldSet::from_fields_v1(child);
                if !parsed.is_empty() {
                    set.children.insert(pe, parsed);
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    #[test]
    fn key_elements_sort_their_fields_by_name_like_kubernetes() {
        let pe = PathElement::key([
            ("protocol".to_owned(), json!("TCP")),
            ("containerPort".to_owned(), json!(80)),
        ]);
        assert_eq!(
            pe.to_fields_v1_key(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn paths_print_the_way_conflict_messages_show_them() {
        let cases = [
            (
                Path::fields(&["spec", "forProvider", "chart", "version"]),
                ".spec.forProvider.chart.version",
            ),
            (
                Path(vec![
                    f("status"),
                    f("conditions"),
                    PathElement::key([("type".to_owned(), json!("Ready"))]),
                    f("status"),
                ]),
                r#".status.conditions[type="Ready"].status"#,
            ),
            (
                Path(vec![
                    f("metadata"),
                    f("finalizers"),
                    PathElement::value(&json!("a")),
                ]),
                r#".metadata.finalizers[="a"]"#,
            ),
            (Path(vec![f("x"), PathElement::Index(3)]), ".x[3]"),
        ];
        for (path, want) in cases {
            assert_eq!(path.to_string(), want);
        }
    }

    #[test]
    fn fields_v1_marks_a_member_with_children_by_a_dot_entry() {
        let ready = PathElement::key([("type".to_owned(), json!("Ready"))]);
        let mut set = FieldSet::new();
        set.insert(&[f("status"), f("conditions"), ready.clone()]);
        set.insert(&[f("status"), f("conditions"), ready.clone(), f("status")]);
        set.insert(&[f("metadata"), f("labels"), f("app")]);
        let encoded = set.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:status": {"f:conditions": {r#"k:{"type":"Ready"}"#: {".": {}, "f:status": {}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&encoded), set);
    }

    #[test]
    fn set_algebra_keeps_only_non_empty_children() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("a")]);
        a.insert(&[f("spec"), f("b")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("a")]);
        let diff = a.difference(&b);
        assert!(diff.has(&[f("spec"), f("b")]));
        assert!(!diff.has(&[f("spec"), f("a")]));
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.intersection(&b), b);
        assert_eq!(b.union(&a), a);
        assert!(a.without_prefix(&[f("spec")]).is_empty());
    }

    #[test]
    fn paths_list_a_member_before_its_descendants() {
        let ready = PathElement::key([("type".to_owned(), json!("Ready"))]);
        let mut set = FieldSet::new();
        set.insert(&[f("c"), ready.clone(), f("status")]);
        set.insert(&[f("c"), ready.clone()]);
        set.insert(&[f("a")]);
        let printed: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [".a", r#".c[type="Ready"]"#, r#".c[type="Ready"].status"#]
        );
    }
}
