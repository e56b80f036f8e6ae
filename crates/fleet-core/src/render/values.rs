//! The values merge of the reference composition: defaults deep-merged with the claim's
//! values (user wins; maps merge key by key; lists and scalars replace), unless
//! `overrideAllValues` is non-empty, in which case it is used alone.

use serde_json::{Map, Value};

/// Merges `user` over `base`, key by key where both sides hold maps.
pub fn deep_merge(base: &Map<String, Value>, user: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = base.clone();
    for (key, value) in user {
        let combined = match (merged.get(key), value) {
            (Some(Value::Object(b)), Value::Object(u)) => Value::Object(deep_merge(b, u)),
            _ => value.clone(),
        };
        merged.insert(key.clone(), combined);
    }
    merged
}

/// The values a Release gets from its chart defaults and the claim's component.
pub fn component_values(
    defaults: &Map<String, Value>,
    values: Option<&Map<String, Value>>,
    override_all: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    match override_all {
        Some(all) if !all.is_empty() => all.clone(),
        _ => match values {
            Some(values) => deep_merge(defaults, values),
            None => defaults.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn user_values_win_and_maps_merge_key_by_key() {
        let defaults = obj(json!({"deploy": {"operator": true, "restapi": true}}));
        let user = obj(
            json!({"deploy": {"restapi": false}, "adminui": {"service": {"type": "LoadBalancer"}}}),
        );
        assert_eq!(
            Value::Object(component_values(&defaults, Some(&user), None)),
            json!({"deploy": {"operator": true, "restapi": false}, "adminui": {"service": {"type": "LoadBalancer"}}})
        );
    }

    #[test]
    fn lists_and_scalars_replace_rather_than_merge() {
        let defaults = obj(json!({"list": [1, 2], "map": {"a": 1}}));
        let user = obj(json!({"list": [3], "map": "scalar"}));
        assert_eq!(
            Value::Object(deep_merge(&defaults, &user)),
            json!({"list": [3], "map": "scalar"})
        );
    }

    #[test]
    fn empty_override_counts_as_unset() {
        let defaults = obj(json!({"prewarmDevDB": true}));
        let empty = Map::new();
        assert_eq!(component_values(&defaults, None, Some(&empty)), defaults);
        let all = obj(json!({"x": 1}));
        assert_eq!(
            component_values(&defaults, Some(&defaults), Some(&all)),
            all
        );
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,6}".prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_map() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-d]", json_value(), 0..4)
            .prop_map(|m| m.into_iter().collect())
    }

    /// Every leaf path of `user` (a non-object value, or an empty object) with its value.
    fn leaves(prefix: Vec<String>, map: &Map<String, Value>, out: &mut Vec<(Vec<String>, Value)>) {
        for (k, v) in map {
            let mut path = prefix.clone();
            path.push(k.clone());
            match v {
                Value::Object(m) if !m.is_empty() => leaves(path, m, out),
                _ => out.push((path, v.clone())),
            }
        }
    }

    fn lookup<'a>(map: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
        let (first, rest) = path.split_first()?;
        let v = map.get(first)?;
        if rest.is_empty() {
            return Some(v);
        }
        lookup(v.as_object()?, rest)
    }

    proptest! {
        #[test]
        fn user_values_always_survive(defaults in json_map(), user in json_map()) {
            let merged = component_values(&defaults, Some(&user), None);
            let mut user_leaves = Vec::new();
            leaves(vec![], &user, &mut user_leaves);
            for (path, value) in user_leaves {
                match (&value, lookup(&merged, &path)) {
                    // An empty user map merged into a default map keeps the default's keys.
                    (Value::Object(_), Some(Value::Object(_))) => {}
                    (_, found) => prop_assert_eq!(found, Some(&value), "path {:?}", path),
                }
            }
        }

        #[test]
        fn defaults_survive_unless_the_user_overrides_them(defaults in json_map(), user in json_map()) {
            let merged = component_values(&defaults, Some(&user), None);
            let mut default_leaves = Vec::new();
            leaves(vec![], &defaults, &mut default_leaves);
            for (path, value) in default_leaves {
                // Overridden when the user set any prefix of the path to a non-map.
                let overridden = (1..=path.len()).any(|n| {
                    matches!(lookup(&user, &path[..n]), Some(v) if !v.is_object() || n == path.len())
                });
                if !overridden {
                    prop_assert_eq!(lookup(&merged, &path), Some(&value), "path {:?}", path);
                }
            }
        }

        #[test]
        fn override_all_values_gives_exactly_its_input(defaults in json_map(), user in json_map(), all in json_map()) {
            prop_assume!(!all.is_empty());
            prop_assert_eq!(component_values(&defaults, Some(&user), Some(&all)), all);
        }
    }
}
