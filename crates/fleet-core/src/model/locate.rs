//! Where a field path (`spec.labels.env`, `spec.rollout.waves[1].name`) is written in a
//! document, so that findings made after parsing (names, labels, pins, collisions) point
//! at a line and column like the parser's own errors do.
//!
//! serde_yaml gives positions only to errors, so the walk raises one on reaching the node;
//! the error's position is the node's. A map key is matched against the path rather than
//! split from it, since label and annotation keys hold dots (`app.kubernetes.io/name`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The message of the error that marks the node found; never shown.
const FOUND: &str = "\u{0}psql-fleet: node found";

/// The 1-based line and column, within `text`, of the node at `path` in its document
/// number `index` (0-based), or of the deepest part of the path the document has, or of
/// the document itself.
pub fn locate(text: &str, index: usize, path: &str) -> Option<(usize, usize)> {
    let mut path = path;
    loop {
        if let Some(found) = find(text, index, path) {
            return Some(found);
        }
        // Fall back to the parent: `metadata` when `metadata.name` is left to its default,
        // and the document itself when not even the first part of the path is written.
        path = match path.rfind(['.', '[']) {
            Some(at) => &path[..at],
            None if !path.is_empty() => "",
            None => return None,
        };
    }
}

fn find(text: &str, index: usize, path: &str) -> Option<(usize, usize)> {
    let document = serde_yaml::Deserializer::from_str(text).nth(index)?;
    match (Seek { path }).deserialize(document) {
        // serde_yaml puts the path in front of the message.
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// Looking for `path` below the node about to be read.
struct Seek<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seek<'_> {
    /// At the node the path names: stop here.
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let Some((index, rest)) = self
            .path
            .strip_prefix('[')
            .and_then(|p| p.split_once(']'))
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
        else {
            return Ok(());
        };
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        for _ in 0..index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek { path: rest })?;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        while let Some(rest) = map.next_key_seed(MatchKey { path: self.path })? {
            match rest {
                Some(rest) => {
                    map.next_value_seed(Seek { path: rest })?;
                    return Ok(());
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key: the error marking it when it ends the path, the rest of the path when the path
/// goes on below it, or `None` when the path is elsewhere.
struct MatchKey<'p> {
    path: &'p str,
}

impl<'de, 'p> DeserializeSeed<'de> for MatchKey<'p> {
    type Value = Option<&'p str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'p> Visitor<'de> for MatchKey<'p> {
    type Value = Option<&'p str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let Some(rest) = self.path.strip_prefix(key) else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Err(E::custom(FOUND));
        }
        if let Some(below) = rest.strip_prefix('.') {
            return Ok(Some(below));
        }
        Ok(rest.starts_with('[').then_some(rest))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "kind: A\nmetadata:\n  labels:\n    app.kubernetes.io/name: x\n    app: y\nspec:\n  waves:\n  - {name: a}\n  - name: b\n    selector: {}\n---\nkind: B\n";

    #[test]
    fn keys_are_found_at_any_depth_even_with_dots_in_them() {
        assert_eq!(locate(DOC, 0, "kind"), Some((1, 1)));
        assert_eq!(locate(DOC, 0, "metadata.labels.app"), Some((5, 5)));
        assert_eq!(
            locate(DOC, 0, "metadata.labels.app.kubernetes.io/name"),
            Some((4, 5))
        );
        assert_eq!(locate(DOC, 0, "spec.waves[0].name"), Some((8, 6)));
        assert_eq!(locate(DOC, 0, "spec.waves[1].name"), Some((9, 5)));
        assert_eq!(locate(DOC, 0, "spec.waves[1]"), Some((9, 5)));
        assert_eq!(locate(DOC, 1, "kind"), Some((12, 1)));
    }

    #[test]
    fn a_missing_field_falls_back_to_its_parent() {
        assert_eq!(locate(DOC, 0, "metadata.name"), Some((2, 1)));
        assert_eq!(locate(DOC, 0, "spec.waves[7].name"), Some((7, 3)));
        assert_eq!(locate(DOC, 0, "status"), Some((1, 1)));
    }
}
