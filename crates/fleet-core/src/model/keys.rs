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

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::head::Head;

/// The merge key.
pub const MERGE_KEY: &str = "<<";

/// What the key check learned about a document it accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    /// Whether any mapping of the document has a merge key.
    pub merges: bool,
    /// The document's top-level `apiVersion` and `kind`, read on the way, so that the
    /// document need not be parsed again for them: `Some` when the document is a mapping
    /// with text keys whose `apiVersion` and `kind`, where given, are plain text or null.
    /// `None` where only a typed parse can say what they are, or word what is wrong.
    pub head: Option<Head>,
}

/// Walks one document, failing at the first repeated key with its position.
pub fn check<'de, D: Deserializer<'de>>(document: D) -> Result<Keys, D::Error> {
    let merges = Cell::new(false);
    let head = RefCell::new(None);
    Node {
        merges: &merges,
        role: Role::Document(&head),
    }
    .deserialize(document)?;
    Ok(Keys {
        merges: merges.get(),
        head: head.into_inner(),
    })
}

/// Any node; maps check their keys, everything is walked to the leaves.
#[derive(Clone, Copy)]
struct Node<'a> {
    merges: &'a Cell<bool>,
    role: Role<'a>,
}

/// Where a node stands, as far as the document's head is concerned.
#[derive(Clone, Copy)]
enum Role<'a> {
    /// The document itself, whose mapping fills in its [`Head`].
    Document(&'a RefCell<Option<Head>>),
    /// A top-level `apiVersion` or `kind`, whose text is kept.
    HeadField,
    Inner,
}

/// What a node held, as far as a head is concerned: only a [`Role::HeadField`]'s text is
/// kept.
enum Captured {
    Text(String),
    Null,
    /// A number, a collection, a tagged node: the typed parse says what it makes of it.
    Other,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Captured;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Captured, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Captured;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_str<E>(self, v: &str) -> Result<Captured, E> {
        Ok(match self.role {
            Role::HeadField => Captured::Text(v.to_owned()),
            _ => Captured::Other,
        })
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Captured, E> {
        Ok(Captured::Other)
    }
    fn visit_unit<E>(self) -> Result<Captured, E> {
        Ok(Captured::Null)
    }
    fn visit_none<E>(self) -> Result<Captured, E> {
        Ok(Captured::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Captured, D::Error> {
        self.deserialize(d).map(|_| Captured::Other)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Captured, D::Error> {
        self.deserialize(d).map(|_| Captured::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Captured, A::Error> {
        let inner = self.inner();
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(Captured::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Captured, A::Error> {
        let mut seen = HashSet::new();
        let inner = self.inner();
        let mut head = matches!(self.role, Role::Document(_)).then(Head::default);
        while let Some(key) = map.next_key_seed(Key {
            seen: &mut seen,
            merges: self.merges,
        })? {
            let Some(fields) = head.as_mut() else {
                map.next_value_seed(inner)?;
                continue;
            };
            let field = match key {
                KeyText::ApiVersion => &mut fields.api_version,
                KeyText::Kind => &mut fields.kind,
                KeyText::Other => {
                    map.next_value_seed(inner)?;
                    continue;
                }
                KeyText::NotText => {
                    map.next_value_seed(inner)?;
                    head = None;
                    continue;
                }
            };
            let head_field = Node {
                role: Role::HeadField,
                ..self
            };
            match map.next_value_seed(head_field)? {
                Captured::Text(text) => *field = Some(text),
                Captured::Null => *field = None,
                Captured::Other => head = None,
            }
        }
        if let Role::Document(cell) = self.role {
            *cell.borrow_mut() = head;
        }
        Ok(Captured::Other)
    }

    /// A tagged node (`!Custom x`): its content is walked like any other. A tagged
    /// document is left to the typed parse, which reads tags its own way.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Captured, A::Error> {
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(Tag)?;
        variant
            .newtype_variant_seed(self.inner())
            .map(|_| Captured::Other)
    }
}

impl Node<'_> {
    /// The nodes under this one: never the document, nor a head field.
    fn inner(self) -> Self {
        Node {
            role: Role::Inner,
            ..self
        }
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

/// Which key was read, as far as a document's head is concerned.
enum KeyText {
    ApiVersion,
    Kind,
    Other,
    /// A number, boolean or null: a typed parse may read it other than as JSON does.
    NotText,
}

impl Key<'_, '_> {
    fn record<E: de::Error>(self, key: String) -> Result<KeyText, E> {
        self.check(key).map(|()| KeyText::NotText)
    }

    fn check<E: de::Error>(self, key: String) -> Result<(), E> {
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
    type Value = KeyText;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyText, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Keys as sigs.k8s.io/yaml writes them into JSON.
impl<'de> Visitor<'de> for Key<'_, '_> {
    type Value = KeyText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean as a mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
        self.record(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
        self.record(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<KeyText, E> {
        self.record(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
        self.record(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<KeyText, E> {
        self.record(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
        let key = if v.is_nan() {
            ".nan".to_string()
        } else if v.is_infinite() {
            if v > 0.0 { ".inf" } else { "-.inf" }.to_string()
        } else {
            v.to_string()
        };
        self.record(key)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
        self.check(v.to_string())?;
        Ok(match v {
            "apiVersion" => KeyText::ApiVersion,
            "kind" => KeyText::Kind,
            _ => KeyText::Other,
        })
    }
    /// `~:` or `null:`; JSON has no null key, and the typed parse says so where it matters.
    fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
        self.record("null".to_string())
    }
    fn visit_none<E: de::Error>(self) -> Result<KeyText, E> {
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
