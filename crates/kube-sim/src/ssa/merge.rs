//! Merging an applied configuration into the live object, and pruning what an applier stopped
//! applying: the value side of server-side apply.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::schema::{ListKind, Node};
use super::typed::{indexed_items, shape, Shape};

/// `config` merged over `live`: granular maps and lists merge entry by entry, everything else is
/// replaced by the configuration's value.
pub(crate) fn merge(node: &Node, live: &Value, config: &Value) -> Value {
    match (shape(node, live), shape(node, config)) {
        (Shape::Map(node), Shape::Map(_)) => {
            let (Value::Object(l), Value::Object(r)) = (live, config) else {
                return config.clone();
            };
            let mut out = l.clone();
            for (key, value) in r {
                let merged = match l.get(key) {
                    Some(existing) => merge(node.field(key).0, existing, value),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::List(items, kind), Shape::List(_, config_kind)) if kind == config_kind => {
            let (Value::Array(l), Value::Array(r)) = (live, config) else {
                return config.clone();
            };
            Value::Array(merge_list(items, kind, l, r))
        }
        _ => config.clone(),
    }
}

/// Merges associative or set lists the way structured-merge-diff orders them: the
/// configuration's order for the items it names, with live-only items kept where they were
/// relative to them.
fn merge_list(items: &Node, kind: &ListKind, live: &[Value], config: &[Value]) -> Vec<Value> {
    let l = indexed_items(kind, live);
    let r = indexed_items(kind, config);
    let in_l: BTreeMap<&PathElement, &Value> = l.iter().map(|(pe, v)| (pe, *v)).collect();
    let in_r: BTreeMap<&PathElement, &Value> = r.iter().map(|(pe, v)| (pe, *v)).collect();
    let mut shared = r
        .iter()
        .map(|(pe, _)| pe)
        .filter(|pe| in_l.contains_key(pe));
    let mut next_shared = shared.next();
    let mut emitted: std::collections::BTreeSet<&PathElement> = Default::default();
    let mut out = Vec::with_capacity(l.len() + r.len());
    let merged_item = |pe: &PathElement| match (in_l.get(pe), in_r.get(pe)) {
        (Some(lv), Some(rv)) => merge(items, lv, rv),
        (Some(v), None) | (None, Some(v)) => (*v).clone(),
        (None, None) => Value::Null,
    };
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r.len() {
        if li < l.len() && ri < r.len() {
            let pe = &l[li].0;
            if *pe == r[ri].0 {
                out.push(merged_item(pe));
                emitted.insert(pe);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if in_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared item the configuration wants later; it is emitted in its turn.
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let pe = &l[li].0;
            if !in_r.contains_key(pe) {
                out.push(merged_item(pe));
                li += 1;
                continue;
            }
            if emitted.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < r.len() {
            let pe = &r[ri].0;
            out.push(merged_item(pe));
            emitted.insert(pe);
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// Removes from `value` what the applier owned last time (`last`) and no manager owns now
/// (`managed`, which includes the applier's new configuration). A named field counts as owned
/// when anything below it is, so a struct survives while someone owns part of it; list items
/// and map entries count only when owned themselves, as in structured-merge-diff's prune.
pub(crate) fn prune(node: &Node, value: &mut Value, last: &FieldSet, managed: &FieldSet) {
    let empty = FieldSet::new();
    match shape(node, value) {
        Shape::Leaf => {}
        Shape::Map(node) => {
            let Value::Object(object) = value else { return };
            let keys: Vec<String> = object.keys().cloned().collect();
            for key in keys {
                let pe = PathElement::Field(key.clone());
                let (child_node, named) = node.field(&key);
                if owns(last, &pe, named) && !owns(managed, &pe, named) {
                    object.remove(&key);
                } else if let (Some(last_child), Some(child)) =
                    (last.child(&pe), object.get_mut(&key))
                {
                    prune(
                        child_node,
                        child,
                        last_child,
                        managed.child(&pe).unwrap_or(&empty),
                    );
                }
            }
        }
        Shape::List(items_node, kind) => {
            let Value::Array(items) = value else { return };
            let mut kept = Vec::with_capacity(items.len());
            for (index, mut item) in std::mem::take(items).into_iter().enumerate() {
                let pe = super::typed::item_element(kind, index, &item);
                if owns(last, &pe, false) && !owns(managed, &pe, false) {
                    continue;
                }
                if let Some(last_child) = last.child(&pe) {
                    let managed_child = managed.child(&pe).unwrap_or(&empty);
                    prune(items_node, &mut item, last_child, managed_child);
                }
                kept.push(item);
            }
            *items = kept;
        }
    }
}

fn owns(set: &FieldSet, pe: &PathElement, named: bool) -> bool {
    set.has_member(pe) || (named && set.child(pe).is_some())
}

/// Resets `new` at `path` to what `live` holds there (removing it if live has none): how the
/// server keeps writes out of a part of the object that another endpoint owns.
pub fn reset_subtree(live: &Value, new: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        *new = live.clone();
        return;
    };
    let live_value = parents
        .iter()
        .try_fold(live, |v, key| v.get(key))
        .and_then(|v| v.get(last));
    let mut target = new;
    for key in parents {
        let Some(object) = target.as_object_mut() else {
            return;
        };
        if !object.contains_key(*key) && live_value.is_none() {
            return;
        }
        target = object
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Some(object) = target.as_object_mut() else {
        return;
    };
    match live_value {
        Some(v) => {
            object.insert((*last).to_owned(), v.clone());
        }
        None => {
            object.remove(*last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssa::schema::Schema;
    use crate::ssa::typed::to_field_set;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::from_openapi_v3(&json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "policies": {"type": "array", "items": {"type": "string"}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "additionalProperties": {"type": "string"}},
                "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "a": {"type": "string"}, "b": {"type": "string"}}}}
            }}
        }}))
    }

    #[test]
    fn merge_follows_each_fields_list_and_map_type() {
        let cases = [
            // Atomic list: replaced whole.
            (
                json!({"policies": ["a", "b"]}),
                json!({"policies": ["c"]}),
                json!({"policies": ["c"]}),
            ),
            // Set: union, configuration order first for shared items.
            (
                json!({"tags": ["a", "b"]}),
                json!({"tags": ["c", "a"]}),
                json!({"tags": ["c", "a", "b"]}),
            ),
            // Atomic map: replaced whole.
            (
                json!({"selector": {"a": "1"}}),
                json!({"selector": {"b": "2"}}),
                json!({"selector": {"b": "2"}}),
            ),
            // Preserve-unknown map: granular, deeply.
            (
                json!({"values": {"x": {"y": 1, "z": 2}}}),
                json!({"values": {"x": {"y": 3}, "w": true}}),
                json!({"values": {"x": {"y": 3, "z": 2}, "w": true}}),
            ),
            // Associative list: items merged by key, live-only items kept.
            (
                json!({"items": [{"name": "one", "a": "1"}, {"name": "two", "a": "2"}]}),
                json!({"items": [{"name": "two", "b": "x"}]}),
                json!({"items": [{"name": "one", "a": "1"}, {"name": "two", "a": "2", "b": "x"}]}),
            ),
        ];
        let root = schema().root;
        for (live, config, want) in cases {
            let got = merge(&root, &json!({"spec": live}), &json!({"spec": config}));
            assert_eq!(got, json!({"spec": want}), "merging {config} over {live}");
        }
    }

    #[test]
    fn prune_removes_only_what_the_applier_alone_owned() {
        let root = schema().root;
        let before = json!({"spec": {"values": {"keep": 1, "drop": 2},
            "items": [{"name": "one", "a": "1"}, {"name": "two", "a": "2"}]}});
        let last = to_field_set(&root, &before);
        let now = json!({"spec": {"values": {"keep": 1}, "items": [{"name": "two", "a": "2"}]}});
        let mut value = before.clone();
        prune(&root, &mut value, &last, &to_field_set(&root, &now));
        assert_eq!(value, now);

        // With nothing applied any more, the named parent goes too.
        let mut value = before.clone();
        prune(&root, &mut value, &last, &FieldSet::new());
        assert_eq!(value, json!({}));
    }

    #[test]
    fn reset_subtree_copies_from_live_or_removes() {
        let live = json!({"spec": {"a": 1}, "status": {"phase": "Ready"}});
        let mut new = json!({"spec": {"a": 2}, "status": {"phase": "Lost"}});
        reset_subtree(&live, &mut new, &["status"]);
        assert_eq!(new, json!({"spec": {"a": 2}, "status": {"phase": "Ready"}}));
        let mut new = json!({"spec": {"a": 2}, "status": {"phase": "Lost"}});
        reset_subtree(&json!({}), &mut new, &["status"]);
        assert_eq!(new, json!({"spec": {"a": 2}}));
    }
}
