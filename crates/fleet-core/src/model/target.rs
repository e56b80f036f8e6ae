//! A selector claim on one cluster: what the loader puts in the fleet for each cluster
//! whose labels match, which is exactly the named claim that cluster would otherwise need.
//! Expanding early keeps every later stage (render, rollout, prune, metrics, status) working
//! on plain per-cluster claims.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::claim::Claim;
use super::cluster::Cluster;
use super::selector::LabelSelector;
use crate::api::{ComponentSpec, PsqlSpec, ValuesCustomization};
use crate::render::values::deep_merge;

impl Claim {
    /// True for a claim written with `spec.clusterSelector`, before expansion.
    pub fn is_selector_claim(&self) -> bool {
        self.psql.spec.cluster_selector.is_some()
    }

    /// Whether this selector claim goes to `cluster`.
    pub fn selects(&self, cluster: &Cluster) -> bool {
        self.psql
            .spec
            .cluster_selector
            .as_ref()
            .is_some_and(|s| s.matches(&cluster.labels))
    }

    /// This selector claim as it applies to `cluster`: its spec names the cluster (so
    /// `helmProviderConfigRef.name` defaults to it, SPEC 1.1), the first matching
    /// customization is merged in, and the selector is remembered in [`Claim::selector`].
    /// `selector` is shared by every cluster's copy.
    pub fn for_cluster(&self, cluster: &Cluster, selector: &Arc<LabelSelector>) -> Claim {
        let mut psql = self.psql.clone();
        let spec = &mut psql.spec;
        let customizations = std::mem::take(&mut spec.cluster_customizations);
        spec.cluster_selector = None;
        spec.cluster_name = cluster.name.clone();
        if let Some(c) = customizations
            .iter()
            .find(|c| c.selector.matches(&cluster.labels))
        {
            customize(
                spec,
                c.stackgres_operator.as_ref(),
                c.atlas_operator.as_ref(),
            );
        }
        Claim {
            origin: self.origin.clone(),
            psql,
            suspended: self.suspended,
            selector: Some(Arc::clone(selector)),
        }
    }
}

fn customize(
    spec: &mut PsqlSpec,
    stackgres: Option<&ValuesCustomization>,
    atlas: Option<&ValuesCustomization>,
) {
    if let Some(c) = stackgres {
        merge_component(
            spec.stackgres_operator.get_or_insert_with(Default::default),
            c,
        );
    }
    if let Some(c) = atlas {
        merge_component(spec.atlas_operator.get_or_insert_with(Default::default), c);
    }
}

/// A customization's values win over the claim's by the merge of render/values.rs; they
/// go over whichever of the claim's two value fields is in force, so that a claim using
/// `overrideAllValues` can still vary one key by cluster. A non-empty
/// `overrideAllValues` of the customization replaces everything, as in a claim.
fn merge_component(component: &mut ComponentSpec, c: &ValuesCustomization) {
    if let Some(all) = non_empty(c.override_all_values.as_ref()) {
        component.override_all_values = Some(all.clone());
        return;
    }
    let Some(values) = &c.values else { return };
    let target = match &mut component.override_all_values {
        Some(all) if !all.is_empty() => all,
        _ => component.values.get_or_insert_with(Map::new),
    };
    *target = deep_merge(target, values);
}

fn non_empty(map: Option<&Map<String, Value>>) -> Option<&Map<String, Value>> {
    map.filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not a map"),
        }
    }

    fn component(values: Option<Value>, all: Option<Value>) -> ComponentSpec {
        ComponentSpec {
            values: values.map(map),
            override_all_values: all.map(map),
            ..ComponentSpec::default()
        }
    }

    fn custom(values: Option<Value>, all: Option<Value>) -> ValuesCustomization {
        ValuesCustomization {
            values: values.map(map),
            override_all_values: all.map(map),
        }
    }

    #[test]
    fn customization_values_merge_over_the_claims_and_lists_replace() {
        let mut c = component(Some(json!({"a": {"x": 1, "y": 2}, "l": [1, 2]})), None);
        merge_component(
            &mut c,
            &custom(Some(json!({"a": {"y": 3}, "l": [9]})), None),
        );
        assert_eq!(
            Value::Object(c.values.unwrap()),
            json!({"a": {"x": 1, "y": 3}, "l": [9]})
        );
    }

    #[test]
    fn customization_values_go_over_the_claims_override_when_it_is_in_force() {
        let mut c = component(Some(json!({"v": 1})), Some(json!({"all": true})));
        merge_component(&mut c, &custom(Some(json!({"extra": 1})), None));
        assert_eq!(
            Value::Object(c.override_all_values.unwrap()),
            json!({"all": true, "extra": 1})
        );
        assert_eq!(Value::Object(c.values.unwrap()), json!({"v": 1}));
    }

    #[test]
    fn a_non_empty_customization_override_replaces_everything_and_an_empty_one_is_unset() {
        let mut c = component(Some(json!({"v": 1})), None);
        merge_component(&mut c, &custom(None, Some(json!({}))));
        assert_eq!(c, component(Some(json!({"v": 1})), None));
        merge_component(
            &mut c,
            &custom(Some(json!({"w": 2})), Some(json!({"only": 1}))),
        );
        assert_eq!(
            Value::Object(c.override_all_values.unwrap()),
            json!({"only": 1})
        );
    }
}
