//! Selector claims (`spec.clusterSelector`) become one claim per matching cluster, in the
//! claim's place in file order and by cluster name within it. A selector that matches no
//! cluster is only a warning: a fleet may well name clusters it does not have yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Claim, Cluster, Diagnostic};

pub(super) fn expand_selector_claims(
    claims: Vec<Claim>,
    clusters: &BTreeMap<String, Cluster>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Claim> {
    let mut expanded = Vec::with_capacity(claims.len());
    for claim in claims {
        let Some(selector) = claim.psql.spec.cluster_selector.clone() else {
            expanded.push(claim);
            continue;
        };
        let selector = Arc::new(selector);
        let before = expanded.len();
        expanded.extend(
            clusters
                .values()
                .filter(|cluster| claim.selects(cluster))
                .map(|cluster| claim.for_cluster(cluster, &selector)),
        );
        if expanded.len() == before {
            out.push(
                Diagnostic::field(
                    &claim.origin,
                    "spec.clusterSelector",
                    format!(
                        "matches none of the fleet's {} clusters, so the claim renders nothing",
                        clusters.len()
                    ),
                )
                .warning(),
            );
        }
    }
    expanded
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fleetdir::{load, LoadOutcome};
    use crate::model::LabelSelector;
    use crate::render::{render_cluster, Observed};
    use crate::testing::{claim, cluster, fleet, selector_claim, FleetFiles};

    fn clusters() -> FleetFiles {
        FleetFiles::new()
            .with(&fleet("main").pin("stackgres-operator", "1.19.0"))
            .with(&cluster("dev-1").label("env", "dev"))
            .with(
                &cluster("prod-eu-1")
                    .label("env", "prod")
                    .label("region", "eu"),
            )
            .with(
                &cluster("prod-us-1")
                    .label("env", "prod")
                    .label("region", "us"),
            )
    }

    fn messages(outcome: &LoadOutcome) -> Vec<String> {
        outcome
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_selector_claim_is_one_named_claim_on_each_matching_cluster() {
        let outcome = load(
            &clusters()
                .with(&selector_claim("db", &[("env", "prod")]))
                .tree(),
        );
        let loaded = outcome.fleet.expect("loads");
        let placed: Vec<_> = loaded
            .claims
            .iter()
            .map(|c| (c.cluster(), c.key().to_string(), c.origin.file.as_str()))
            .collect();
        assert_eq!(
            placed,
            vec![
                ("prod-eu-1", "default/db".into(), "claims/selected/db.yaml"),
                ("prod-us-1", "default/db".into(), "claims/selected/db.yaml"),
            ]
        );
        assert!(loaded.claims_of("dev-1").next().is_none());
        let remembered = loaded.claims[0].selector.as_deref().expect("its selector");
        assert_eq!(remembered.match_labels["env"], "prod");
        // Rendered exactly as a claim naming the cluster: same objects, byte for byte.
        let named = load(&clusters().with(&claim("db", "prod-us-1")).tree())
            .fleet
            .expect("loads");
        let render = |f: &crate::fleetdir::LoadedFleet| {
            let c = &f.clusters["prod-us-1"];
            render_cluster(&f.settings, c, f.claims_of(&c.name), |_| {
                Observed::BOTH_READY
            })
        };
        assert_eq!(render(&loaded), render(&named));
        let release = render(&loaded)[0].to_json();
        assert_eq!(release["spec"]["providerConfigRef"]["name"], "prod-us-1");
    }

    #[test]
    fn naming_and_selecting_at_once_is_an_error_at_the_selector() {
        let both = claim("db", "")
            .cluster_selector(LabelSelector::default())
            .raw_spec_field("clusterName", json!("dev-1"));
        let outcome = load(&clusters().with(&both).tree());
        assert!(outcome.fleet.is_none());
        let d = outcome.errors().next().expect("an error");
        assert_eq!(d.field.as_deref(), Some("spec.clusterSelector"));
        assert!(d.line.is_some() && d.column.is_some(), "{d}");
        assert!(d.message.contains("not both"), "{d}");
    }

    #[test]
    fn an_empty_selector_takes_every_cluster_with_a_warning() {
        let outcome = load(
            &clusters()
                .with(&claim("db", "").cluster_selector(LabelSelector::default()))
                .tree(),
        );
        assert_eq!(outcome.fleet.as_ref().expect("loads").claims.len(), 3);
        let found = &outcome.diagnostics;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field.as_deref(), Some("spec.clusterSelector"));
        assert!(!found[0].is_error());
        assert!(found[0]
            .message
            .starts_with("the empty selector matches every cluster"));
    }

    #[test]
    fn a_selector_matching_no_cluster_is_a_warning_not_an_error() {
        let outcome = load(
            &clusters()
                .with(&selector_claim("db", &[("env", "qa")]))
                .tree(),
        );
        assert!(outcome.fleet.expect("loads").claims.is_empty());
        assert_eq!(outcome.diagnostics.len(), 1);
        assert!(!outcome.diagnostics[0].is_error());
        assert!(outcome.diagnostics[0]
            .message
            .starts_with("matches none of the fleet's 3 clusters"));
    }

    #[test]
    fn a_named_and_a_selector_claim_writing_one_object_are_an_error_naming_both_files_and_the_cluster(
    ) {
        let outcome = load(
            &clusters()
                .with(&claim("db", "prod-eu-1"))
                .with(&selector_claim("db", &[("env", "prod")]))
                .tree(),
        );
        assert!(outcome.fleet.is_none());
        let found = messages(&outcome);
        // StackGres, Atlas and the Usage, each once: the selector claim's file is read last.
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .all(|m| m.starts_with("claims/selected/db.yaml:")
                    && m.contains("on cluster \"prod-eu-1\", which claims/prod-eu-1/db.yaml:")),
            "{found:?}"
        );
    }

    #[test]
    fn two_selector_claims_meeting_on_many_clusters_are_one_finding_per_field() {
        let outcome = load(
            &clusters()
                .with(
                    &selector_claim("a", &[])
                        .namespace("team")
                        .install_namespace("x"),
                )
                .with(&selector_claim("b", &[("env", "prod")]).install_namespace("x"))
                .tree(),
        );
        let found = messages(&outcome);
        let helm: Vec<_> = found
            .iter()
            .filter(|m| m.contains("Helm release"))
            .collect();
        assert_eq!(helm.len(), 2, "{found:?}");
        assert!(
            helm[0].contains("on cluster \"dev-1\" (and 2 more: \"prod-eu-1\", \"prod-us-1\"), as claim team/a in claims/selected/a.yaml:")
                || helm[0].contains("on cluster \"prod-eu-1\" (and 1 more: \"prod-us-1\"), as claim"),
            "{helm:?}"
        );
    }

    #[test]
    fn customizations_vary_values_by_cluster_and_the_first_match_wins() {
        use crate::testing::component;
        let db = selector_claim("db", &[("env", "prod")])
            .stackgres(component().values(json!({"a": {"x": 1, "y": 1}})))
            .customize(&[("region", "eu")], Some(json!({"a": {"y": 2}})), None)
            .customize(
                &[("env", "prod")],
                Some(json!({"a": {"y": 3}})),
                Some(json!({"z": 1})),
            );
        let loaded = load(&clusters().with(&db).tree()).fleet.expect("loads");
        let values = |cluster: &str| {
            let c = loaded.claims_of(cluster).next().expect("placed");
            let sg = c.spec().stackgres_operator.as_ref().expect("stackgres");
            (
                json!(sg.values),
                c.spec().atlas_operator.as_ref().map(|a| json!(a.values)),
                c.spec().cluster_customizations.is_empty(),
            )
        };
        assert_eq!(
            values("prod-eu-1"),
            (json!({"a": {"x": 1, "y": 2}}), None, true)
        );
        assert_eq!(
            values("prod-us-1"),
            (json!({"a": {"x": 1, "y": 3}}), Some(json!({"z": 1})), true)
        );
    }

    #[test]
    fn customizations_on_a_named_claim_are_an_error() {
        let db = claim("db", "dev-1").customize(&[], Some(json!({"a": 1})), None);
        let outcome = load(&clusters().with(&db).tree());
        let d = outcome.errors().next().expect("an error");
        assert_eq!(d.field.as_deref(), Some("spec.clusterCustomizations"));
    }

    #[test]
    fn fleet_pins_and_overrides_choose_versions_for_selector_claims_as_for_named_ones() {
        let files = FleetFiles::new()
            .with(
                &fleet("main")
                    .pin("stackgres-operator", "1.18.4")
                    .override_pins(&[("env", "dev")], &[("stackgres-operator", "1.19.0")]),
            )
            .with(&cluster("dev-1").label("env", "dev"))
            .with(&cluster("prod-1").label("env", "prod"))
            .with(&selector_claim("db", &[]).cluster_selector(LabelSelector::default()));
        let loaded = load(&files.tree()).fleet.expect("loads");
        let version = |name: &str| {
            let c = &loaded.clusters[name];
            let objects = render_cluster(&loaded.settings, c, loaded.claims_of(name), |_| {
                Observed::default()
            });
            objects
                .iter()
                .map(|o| o.to_json())
                .find(|o| o["spec"]["forProvider"]["chart"]["name"] == "stackgres-operator")
                .expect("the StackGres Release")["spec"]["forProvider"]["chart"]["version"]
                .clone()
        };
        assert_eq!(version("dev-1"), json!("1.19.0"));
        assert_eq!(version("prod-1"), json!("1.18.4"));
    }

    #[test]
    fn a_customization_reaches_the_rendered_values_over_the_chart_defaults() {
        use crate::testing::component;
        let db = selector_claim("db", &[("env", "prod")])
            .stackgres(component().values(json!({"deploy": {"restapi": false}})))
            .customize(
                &[("region", "eu")],
                Some(json!({"deploy": {"collector": false}})),
                None,
            );
        let loaded = load(&clusters().with(&db).tree()).fleet.expect("loads");
        let values = |name: &str| {
            let c = &loaded.clusters[name];
            let objects = render_cluster(&loaded.settings, c, loaded.claims_of(name), |_| {
                Observed::default()
            });
            objects
                .iter()
                .map(|o| o.to_json())
                .find(|o| o["metadata"]["name"] == "stackgres-operator")
                .expect("the StackGres Release")["spec"]["forProvider"]["values"]
                .clone()
        };
        assert_eq!(
            values("prod-eu-1"),
            json!({"deploy": {"operator": true, "restapi": false, "collector": false}})
        );
        assert_eq!(
            values("prod-us-1"),
            json!({"deploy": {"operator": true, "restapi": false}})
        );
    }
}
