//! JSON as a live view holds it. A live view keeps every watched object of every cluster
//! for as long as the agent runs, and serde_json's maps are B-trees whose every node has
//! room for eleven entries: a Kubernetes object is mostly maps of one to five keys (labels,
//! each condition, `chart`, `providerConfigRef`), so at ten thousand clusters two thirds of
//! the JSON held was empty node slots. Here a map is a boxed slice sorted by key (40 bytes
//! an entry against a 632-byte node) and a string a boxed `str`; reads are the few the
//! decisions make: a key, a pointer, a scalar, and the comparison with desired JSON.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum CompactJson {
    Null,
    Bool(bool),
    Number(Number),
    String(Box<str>),
    Array(Box<[CompactJson]>),
    /// Sorted by key, as serde_json's own maps iterate, so turning it back gives the same
    /// `Value` and a key is found by binary search.
    Object(Box<[(Box<str>, CompactJson)]>),
}

impl From<Value> for CompactJson {
    fn from(value: Value) -> CompactJson {
        match value {
            Value::Null => CompactJson::Null,
            Value::Bool(b) => CompactJson::Bool(b),
            Value::Number(n) => CompactJson::Number(n),
            Value::String(s) => CompactJson::String(s.into_boxed_str()),
            Value::Array(items) => CompactJson::Array(items.into_iter().map(Self::from).collect()),
            // A serde_json map iterates in key order, which the binary search relies on.
            Value::Object(map) => CompactJson::Object(
                map.into_iter()
                    .map(|(k, v)| (k.into_boxed_str(), Self::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Decoded straight from the server's bytes, without a `Value` on the way: each map is
/// collected, then sorted once, where building the B-tree and converting it would allocate
/// every node and every key twice.
impl<'de> Deserialize<'de> for CompactJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CompactJson, D::Error> {
        deserializer.deserialize_any(CompactVisitor)
    }
}

struct CompactVisitor;

impl<'de> Visitor<'de> for CompactVisitor {
    type Value = CompactJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<CompactJson, E> {
        Ok(CompactJson::Null)
    }

    fn visit_none<E>(self) -> Result<CompactJson, E> {
        Ok(CompactJson::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<CompactJson, D::Error> {
        CompactJson::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<CompactJson, E> {
        Ok(CompactJson::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<CompactJson, E> {
        Ok(CompactJson::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<CompactJson, E> {
        Ok(CompactJson::Number(n.into()))
    }

    // As serde_json's `Value` does: a float JSON can hold is always a number.
    fn visit_f64<E>(self, n: f64) -> Result<CompactJson, E> {
        Ok(Number::from_f64(n).map_or(CompactJson::Null, CompactJson::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<CompactJson, E> {
        Ok(CompactJson::String(s.into()))
    }

    fn visit_string<E>(self, s: String) -> Result<CompactJson, E> {
        Ok(CompactJson::String(s.into_boxed_str()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CompactJson, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(CompactJson::Array(items.into_boxed_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CompactJson, A::Error> {
        let mut entries: Vec<(Box<str>, CompactJson)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key.into_boxed_str(), map.next_value()?));
        }
        Ok(CompactJson::object(entries))
    }
}

impl From<&CompactJson> for Value {
    fn from(json: &CompactJson) -> Value {
        match json {
            CompactJson::Null => Value::Null,
            CompactJson::Bool(b) => Value::Bool(*b),
            CompactJson::Number(n) => Value::Number(n.clone()),
            CompactJson::String(s) => Value::String(s.to_string()),
            CompactJson::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            CompactJson::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

impl CompactJson {
    /// A map of `entries` in any order; of a key given twice the last value stands, as in
    /// serde_json's maps.
    pub fn object(mut entries: Vec<(Box<str>, CompactJson)>) -> CompactJson {
        // Stable, so equal keys keep their order and the last one is kept below.
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut kept: Vec<(Box<str>, CompactJson)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match kept.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => kept.push(entry),
            }
        }
        CompactJson::Object(kept.into_boxed_slice())
    }

    /// The value at `key` of a map; `None` for a missing key or a value that is no map.
    pub fn get(&self, key: &str) -> Option<&CompactJson> {
        let CompactJson::Object(entries) = self else {
            return None;
        };
        entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &entries[i].1)
    }

    /// The value at a JSON pointer made of map keys only (`/metadata/labels`), which is all
    /// the live view is asked for.
    pub fn pointer(&self, pointer: &str) -> Option<&CompactJson> {
        let path = pointer.strip_prefix('/')?;
        path.split('/').try_fold(self, |at, key| at.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            CompactJson::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            CompactJson::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, CompactJson::Null)
    }

    /// Whether this holds the same JSON as `value`, as `Value`'s own equality has it.
    pub fn same_as(&self, value: &Value) -> bool {
        match (self, value) {
            (CompactJson::Null, Value::Null) => true,
            (CompactJson::Bool(a), Value::Bool(b)) => a == b,
            (CompactJson::Number(a), Value::Number(b)) => a == b,
            (CompactJson::String(a), Value::String(b)) => a.as_ref() == b,
            (CompactJson::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.same_as(b))
            }
            (CompactJson::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.as_ref() == kb && va.same_as(vb))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn served_release() -> Value {
        json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {
                "name": "stackgres", "namespace": "default", "resourceVersion": "42",
                "labels": {"psql.hops.ops.com.ai/fleet": "prod", "b": "2", "a": "1"},
                "annotations": {},
            },
            "spec": {"forProvider": {"chart": {"name": "stackgres-operator", "version": "1.15.0"},
                     "values": {"list": [1, 2.5, -3, null, true, "x", {"k": []}]}}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 2}]},
        })
    }

    #[test]
    fn what_is_held_turns_back_into_the_same_json() {
        let value = served_release();
        let held = CompactJson::from(value.clone());
        assert_eq!(Value::from(&held), value);
        assert!(held.same_as(&value));
    }

    #[test]
    fn keys_and_pointers_find_what_serde_json_finds() {
        let value = served_release();
        let held = CompactJson::from(value.clone());
        for pointer in [
            "/metadata/labels/a",
            "/metadata/labels/b",
            "/metadata/resourceVersion",
            "/spec/forProvider/chart/name",
            "/kind",
        ] {
            let want = value.pointer(pointer).and_then(Value::as_str);
            assert!(want.is_some(), "{pointer} is in the fixture");
            assert_eq!(held.pointer(pointer).and_then(CompactJson::as_str), want);
        }
        assert_eq!(
            held.get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(|l| l.get("psql.hops.ops.com.ai/fleet"))
                .and_then(CompactJson::as_str),
            Some("prod")
        );
        assert!(held.pointer("/metadata/missing").is_none());
        assert!(
            held.pointer("/kind/deeper").is_none(),
            "a string has no keys"
        );
        assert!(
            held.pointer("kind").is_none(),
            "a pointer starts with a slash"
        );
    }

    #[test]
    fn a_difference_anywhere_makes_it_another_json() {
        let value = served_release();
        let held = CompactJson::from(value.clone());
        for edit in [
            "/metadata/labels/a",
            "/spec/forProvider/values/list/1",
            "/spec/forProvider/values/list/6/k",
        ] {
            let mut other = value.clone();
            *other.pointer_mut(edit).unwrap() = json!("changed");
            assert!(!held.same_as(&other), "{edit}");
        }
        let mut fewer = value.clone();
        fewer["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("b");
        assert!(!held.same_as(&fewer));
        let mut more = value;
        more["metadata"]["labels"]["c"] = json!("3");
        assert!(!held.same_as(&more));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z./-]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z./]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_is_held_whole_and_compares_as_serde_json_does(a in any_json(), b in any_json()) {
            let held = CompactJson::from(a.clone());
            prop_assert_eq!(&Value::from(&held), &a);
            prop_assert_eq!(held.same_as(&b), a == b);
            prop_assert!(held.same_as(&a));
        }

        #[test]
        fn any_json_decodes_from_its_text_as_serde_json_decodes_it(a in any_json()) {
            let text = serde_json::to_string(&a).unwrap();
            let decoded: CompactJson = serde_json::from_str(&text).unwrap();
            // Against serde_json's own decoding of the text, not `a`: its float parsing
            // need not give back the last digit of every float.
            let value: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(decoded, CompactJson::from(value));
        }
    }

    #[test]
    fn a_map_decoded_from_text_is_sorted_and_keeps_the_last_of_a_key_given_twice() {
        let text = r#"{"b": 1, "a": {"z": null, "y": [true, "s"]}, "b": 2}"#;
        let decoded: CompactJson = serde_json::from_str(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["b"], json!(2), "serde_json keeps the last");
        assert_eq!(decoded, CompactJson::from(value));
        assert_eq!(decoded.get("b").and_then(CompactJson::as_i64), Some(2));
    }
}
