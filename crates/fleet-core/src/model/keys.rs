//! Mapping keys read the way Kubernetes tools read them.
//!
//! kubectl turns YAML into JSON (sigs.k8s.io/yaml) before anything else looks at it, so a
//! key is what it becomes in JSON: a string. `1`, `0x1` and `"1"` are one key there, as are
//! `true` and `"true"`. A key given twice in one mapping, at any depth, is refused: JSON
//! decoders keep one of the two silently, kubectl's strict field validation (its default)
//! refuses the object, and a fleet file must not mean something other than it says.
//!
//! `<<` is YAML's merge key. The YAML parser under kubectl (go-yaml) applies merge keys,
//! so psql-fleet applies them too (see `RawDocument::parse`): the keys of the merged
//! mappings are added where the mapping does not set them itself. Keys set explicitly
//! beside a merge are therefore not duplicates of merged ones.
//!
//! serde_yaml attaches the position of the node being read to an error raised while
//! reading it; raising the error while the repeated key is read places it on that key.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The merge key.
pub const MERGE_KEY: &str = "<<";

/// What the key check learned about a document it accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// Whether any mapping of the document has a merge key.
    pub merges: bool,
}

/// Walks one document, failing at the first repeated key with its position.
pub fn check<'de, D: Deserializer<'de>>(document: D) -> Result<Keys, D::Error> {
    let merges = Cell::new(false);
    Node { merges: &merges }.deserialize(document)?;
    Ok(Keys {
        merges: merges.get(),
    })
}

/// Any node; maps check their keys, everything is walked to the leaves.
#[derive(Clone, Copy)]
struct Node<'a> {
    merges: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while map
            .next_key_seed(Key {
                seen: &mut seen,
                merges: self.merges,
            })?
            .is_some()
        {
            map.next_value_seed(self)?;
        }
        Ok(())
    }

    /// A tagged node (`!Custom x`): its content is walked like any other.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(Tag)?;
        variant.newtype_variant_seed(self)
    }
}

/// A tag's name, ignored.
struct Tag;

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        <de::IgnoredAny as de::Deserialize>::deserialize(d).map(|_| ())
    }
}

/// One key of a mapping, checked against the keys before it.
struct Key<'a, 'm> {
    seen: &'a mut HashSet<String>,
    merges: &'m Cell<bool>,
}

impl Key<'_, '_> {
    fn record<E: de::Error>(self, key: String) -> Result<(), E> {
        if key == MERGE_KEY {
            self.merges.set(true);
        }
        if self.seen.insert(key.clone()) {
            Ok(())
        } else {
            // Worded as serde words a struct's repeated field, which the diagnostic
            // turns into the key's field path.
            Err(E::custom(format_args!("duplicate field `{key}`")))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Keys as sigs.k8s.io/yaml writes them into JSON.
impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean as a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        self.record(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        let key = if v.is_nan() {
            ".nan".to_string()
        } else if v.is_infinite() {
            if v > 0.0 { ".inf" } else { "-.inf" }.to_string()
        } else {
            v.to_string()
        };
        self.record(key)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.record(v.to_string())
    }
    /// `~:` or `null:`; JSON has no null key, and the typed parse says so where it matters.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.record("null".to_string())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_problem(text: &str) -> Option<String> {
        serde_yaml::Deserializer::from_str(text)
            .map(check)
            .find_map(Result::err)
            .map(|e| e.to_string())
    }

    #[test]
    fn a_key_given_twice_is_refused_at_the_second_one_at_any_depth() {
        let problem = first_problem("a:\n  b:\n  - {x: 1}\n  - {x: 1, y: 2, x: 3}\n").unwrap();
        assert_eq!(problem, "a.b[1]: duplicate field `x` at line 4 column 18");
        assert!(first_problem("labels: {env: dev, env: prod}\n").is_some());
        assert!(first_problem("a: {x: 1}\nb: {x: 1}\n").is_none());
    }

    #[test]
    fn keys_that_are_one_json_key_are_duplicates() {
        for text in [
            "{1: a, \"1\": b}",
            "{0x1: a, 1: b}",
            "{true: a, \"true\": b}",
            "{~: a, null: b}",
        ] {
            assert!(first_problem(text).is_some(), "{text}");
        }
        assert!(first_problem("{1: a, \"01\": b, 1.5: c}").is_none());
    }

    #[test]
    fn merge_keys_are_noticed_and_explicit_keys_beside_them_are_not_duplicates() {
        let text = "base: &b {x: 1}\nuse:\n  <<: *b\n  x: 2\n";
        let keys = check(serde_yaml::Deserializer::from_str(text)).unwrap();
        assert!(keys.merges);
        let keys = check(serde_yaml::Deserializer::from_str("a: {x: 1}\n")).unwrap();
        assert!(!keys.merges);
    }
}
