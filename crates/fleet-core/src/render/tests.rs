//! The reference composition's facts (SPEC 1.2 to 1.5), each checked on its own.

use serde_json::{json, Value};

use super::*;
use crate::api::ProviderConfigKind;
use crate::model::document::split;
use crate::model::fleet::ChartVersions;
use crate::testing::{self, component, Document};

fn claim(yaml: &str) -> Claim {
    let docs = split("claims/c.yaml", yaml.as_bytes()).unwrap();
    let mut out = Vec::new();
    let claim = Claim::parse(&docs[0], &mut out);
    assert!(out.iter().all(|d| !d.is_error()), "{out:?}");
    claim.unwrap()
}

fn ctx() -> RenderContext {
    RenderContext {
        fleet: "main".into(),
        cluster: "c1".into(),
        versions: ChartVersions {
            stackgres: "1.18.4".into(),
            atlas: "0.7.23".into(),
        },
    }
}

/// What a claim built with `fleet_core::testing` renders to.
fn rendered_doc(doc: &testing::Claim, observed: Observed) -> Vec<Value> {
    rendered(&doc.to_yaml(), observed)
}

fn rendered(yaml: &str, observed: Observed) -> Vec<Value> {
    render_claim(&claim(yaml), &ctx(), observed)
        .into_objects()
        .iter()
        .map(DesiredObject::to_json)
        .collect()
}

/// Literal: what a claim with no metadata at all and only its cluster renders to is the
/// subject (the defaulted name and namespace), which the builder, naming every claim, cannot
/// write.
const MINIMAL: &str =
    "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nspec: {clusterName: prod-eu-1}\n";

#[test]
fn a_minimal_claim_renders_both_releases_with_every_default() {
    let objects = rendered(MINIMAL, Observed::default());
    let labels = json!({
        "hops.ops.com.ai/managed": "true",
        "hops.ops.com.ai/psql": "psql",
        "fleet.hops.ops.com.ai/fleet": "main",
        "fleet.hops.ops.com.ai/cluster": "c1"
    });
    assert_eq!(
        objects[0],
        json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {"name": "stackgres-operator", "namespace": "default", "labels": labels},
            "spec": {
                "forProvider": {
                    "chart": {
                        "name": "stackgres-operator",
                        "repository": "https://stackgres.io/downloads/stackgres-k8s/stackgres/helm/",
                        "version": "1.18.4"
                    },
                    "namespace": "stackgres",
                    "values": {"deploy": {"operator": true, "restapi": true}}
                },
                "managementPolicies": ["*"],
                "providerConfigRef": {"kind": "ProviderConfig", "name": "prod-eu-1"},
                "rollbackLimit": 3
            }
        })
    );
    assert_eq!(
        objects[1],
        json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {"name": "atlas-operator", "namespace": "default", "labels": labels},
            "spec": {
                "forProvider": {
                    "chart": {"name": "atlas-operator", "repository": "oci://ghcr.io/ariga/charts", "version": "0.7.23"},
                    "namespace": "stackgres",
                    "values": {"prewarmDevDB": true}
                },
                "managementPolicies": ["*"],
                "providerConfigRef": {"kind": "ProviderConfig", "name": "prod-eu-1"},
                "rollbackLimit": 3
            }
        })
    );
    assert_eq!(objects.len(), 2, "no Usage before both Releases are Ready");
}

#[test]
fn the_usage_appears_only_once_both_releases_are_ready() {
    for (stackgres_ready, atlas_ready) in [(false, false), (true, false), (false, true)] {
        let observed = Observed {
            stackgres_ready,
            atlas_ready,
        };
        assert_eq!(rendered(MINIMAL, observed).len(), 2, "{observed:?}");
    }
    let objects = rendered_doc(
        &testing::claim("analytics", "c")
            .namespace("data")
            .stackgres(component().name("sg"))
            .atlas(component().name("at")),
        Observed::BOTH_READY,
    );
    assert_eq!(
        objects[2],
        json!({
            "apiVersion": "protection.crossplane.io/v1beta1",
            "kind": "Usage",
            "metadata": {
                "name": "analytics-delete-atlas-operator-before-stackgres-operator",
                "namespace": "data",
                "labels": {
                    "hops.ops.com.ai/managed": "true",
                    "hops.ops.com.ai/psql": "analytics",
                    "fleet.hops.ops.com.ai/fleet": "main",
                    "fleet.hops.ops.com.ai/cluster": "c1"
                }
            },
            "spec": {
                "replayDeletion": true,
                "of": {"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release", "resourceRef": {"name": "sg"}},
                "by": {"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release", "resourceRef": {"name": "at"}}
            }
        })
    );
}

#[test]
fn reference_labels_win_over_claim_labels_which_only_add_keys() {
    let objects = rendered_doc(
        &testing::claim("a", "c")
            .label("team", "data")
            .label("hops.ops.com.ai/psql", "other")
            .label("hops.ops.com.ai/managed", "false"),
        Observed::BOTH_READY,
    );
    for object in &objects {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["team"], "data");
        assert_eq!(labels["hops.ops.com.ai/psql"], "a");
        assert_eq!(labels["hops.ops.com.ai/managed"], "true");
    }
}

#[test]
fn component_namespace_defaults_to_the_claim_install_namespace() {
    let objects = rendered_doc(
        &testing::claim("psql", "c")
            .install_namespace("ops")
            .atlas(component().namespace("atlas")),
        Observed::default(),
    );
    assert_eq!(objects[0]["spec"]["forProvider"]["namespace"], "ops");
    assert_eq!(objects[1]["spec"]["forProvider"]["namespace"], "atlas");
    assert_eq!(
        objects[0]["metadata"]["namespace"], "default",
        "objects stay in the claim namespace"
    );
}

#[test]
fn provider_config_ref_and_management_policies_come_from_the_claim() {
    let objects = rendered_doc(
        &testing::claim("psql", "c")
            .management_policies(&["Observe"])
            .provider_config(None, Some(ProviderConfigKind::ClusterProviderConfig)),
        Observed::default(),
    );
    for object in &objects {
        assert_eq!(
            object["spec"]["providerConfigRef"],
            json!({"kind": "ClusterProviderConfig", "name": "c"})
        );
        assert_eq!(object["spec"]["managementPolicies"], json!(["Observe"]));
    }
}

#[test]
fn override_all_values_is_used_alone_even_when_values_is_set() {
    let objects = rendered_doc(
        &testing::claim("psql", "c")
            .stackgres(
                component()
                    .values(json!({"deploy": {"restapi": false}}))
                    .override_all_values(json!({"custom": 1})),
            )
            .atlas(
                component()
                    .values(json!({"prewarmDevDB": false, "extra": [1]}))
                    .override_all_values(json!({})),
            ),
        Observed::default(),
    );
    assert_eq!(
        objects[0]["spec"]["forProvider"]["values"],
        json!({"custom": 1})
    );
    assert_eq!(
        objects[1]["spec"]["forProvider"]["values"],
        json!({"prewarmDevDB": false, "extra": [1]})
    );
}

#[test]
fn pinned_versions_reach_the_chart() {
    let mut context = ctx();
    context.versions.stackgres = "1.19.0".into();
    let objects = render_claim(&claim(MINIMAL), &context, Observed::default()).into_objects();
    assert_eq!(
        objects[0].to_json()["spec"]["forProvider"]["chart"]["version"],
        "1.19.0"
    );
    assert_eq!(
        objects[1].to_json()["spec"]["forProvider"]["chart"]["version"],
        "0.7.23"
    );
}
