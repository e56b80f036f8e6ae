//! Plans between fleets built in memory through the real loader; no Git.

use serde_json::json;

use super::*;
use crate::fleetdir::{load, FileTree};
use crate::reconcile::live::LiveObject;
use crate::render::ObjectKind;
use crate::testing::{claim, cluster, component, fleet, wave, Claim, Fleet, FleetFiles};

/// Waves dev then prod, StackGres pinned to `stackgres`.
fn settings(stackgres: &str) -> Fleet {
    fleet("main")
        .pin("stackgres-operator", stackgres)
        .wave(wave("dev", &[("env", "dev")]))
        .wave(wave("prod", &[("env", "prod")]))
}

fn tree(settings: &Fleet, clusters: &[(&str, &str)], claims: &[Claim]) -> FileTree {
    let mut files = FleetFiles::new().with(settings);
    for (name, env) in clusters {
        files.add(&cluster(name).label("env", env));
    }
    for claim in claims {
        files.add(claim);
    }
    files.tree()
}

/// Claim `name` for `cluster`, in a namespace of its own also named `name`.
fn own(name: &str, cluster: &str) -> Claim {
    claim(name, cluster).namespace(name)
}

fn snapshot(t: &FileTree) -> Snapshot {
    let outcome = load(t);
    Snapshot::of_fleet(
        outcome
            .fleet
            .as_ref()
            .unwrap_or_else(|| panic!("{:?}", outcome.diagnostics)),
    )
}

fn labels() -> Labels {
    Labels {
        base: "aaaa".into(),
        head: "bbbb".into(),
    }
}

const CLUSTERS: &[(&str, &str)] = &[("dev-1", "dev"), ("prod-1", "prod"), ("qa-1", "qa")];

fn claims() -> Vec<Claim> {
    vec![own("a", "dev-1"), own("b", "prod-1"), own("c", "qa-1")]
}

#[test]
fn a_fleet_wide_pin_bump_updates_every_stackgres_release_in_wave_order() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let head = snapshot(&tree(&settings("1.19.0"), CLUSTERS, &claims()));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    assert!(p.valid);
    let order: Vec<_> = p
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.wave.as_deref(), c.wave_index))
        .collect();
    assert_eq!(
        order,
        vec![
            ("dev-1", Some("dev"), 1),
            ("prod-1", Some("prod"), 2),
            ("qa-1", None, 3)
        ]
    );
    for c in &p.clusters {
        assert_eq!(c.change, ClusterChange::Changed);
        assert_eq!(c.updates.len(), 1, "{c:?}");
        assert_eq!(c.updates[0].object.name, "stackgres-operator");
        assert_eq!(
            c.updates[0].fields,
            vec![FieldChange {
                path: "spec.forProvider.chart.version".into(),
                base: Some(json!("1.18.4")),
                head: Some(json!("1.19.0")),
            }]
        );
    }
    assert_eq!(
        p.summary,
        Summary {
            clusters: 3,
            changed: 3,
            unchanged: 0,
            creates: 0,
            updates: 3,
            deletes: 0
        }
    );
}

#[test]
fn an_override_changes_only_the_clusters_it_selects() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let with_override =
        settings("1.18.4").override_pins(&[("env", "dev")], &[("atlas-operator", "0.8.0")]);
    let head = snapshot(&tree(&with_override, CLUSTERS, &claims()));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    assert_eq!(p.clusters.len(), 1);
    assert_eq!(p.clusters[0].name, "dev-1");
    assert_eq!(p.clusters[0].updates[0].object.name, "atlas-operator");
    assert_eq!(p.unchanged, vec!["prod-1", "qa-1"]);
}

#[test]
fn a_removed_claim_deletes_its_three_objects_and_a_new_cluster_creates_them() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let mut clusters = CLUSTERS.to_vec();
    clusters.push(("dev-2", "dev"));
    let head_claims = vec![own("a", "dev-1"), own("c", "qa-1"), own("d", "dev-2")];
    let head = snapshot(&tree(&settings("1.18.4"), &clusters, &head_claims));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    let dev2 = p.clusters.iter().find(|c| c.name == "dev-2").unwrap();
    assert_eq!(dev2.change, ClusterChange::Added);
    assert_eq!(dev2.creates.len(), 3);
    let prod = p.clusters.iter().find(|c| c.name == "prod-1").unwrap();
    let deleted: Vec<_> = prod
        .deletes
        .iter()
        .map(|r| (r.kind, r.name.as_str()))
        .collect();
    assert_eq!(
        deleted,
        vec![
            (ObjectKind::Release, "atlas-operator"),
            (ObjectKind::Release, "stackgres-operator"),
            (
                ObjectKind::Usage,
                "b-delete-atlas-operator-before-stackgres-operator"
            ),
        ]
    );
    assert_eq!(p.summary.creates, 3);
    assert_eq!(p.summary.deletes, 3);
}

#[test]
fn a_cluster_that_leaves_lists_its_objects_as_left_in_place() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let head = snapshot(&tree(&settings("1.18.4"), &CLUSTERS[..2], &claims()[..2]));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    assert_eq!(p.clusters.len(), 1);
    assert_eq!(p.clusters[0].change, ClusterChange::Removed);
    assert_eq!(p.clusters[0].unmanaged.len(), 3);
    assert_eq!(p.summary.deletes, 0);
}

#[test]
fn a_values_change_is_one_field_per_leaf() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let mut head_claims = claims();
    head_claims[1] = own("b", "prod-1").stackgres(component().values(json!({
        "deploy": {"restapi": false},
        "adminui": {"service": {"type": "LoadBalancer"}}
    })));
    let head = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &head_claims));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    assert_eq!(p.clusters.len(), 1);
    let fields: Vec<_> = p.clusters[0].updates[0]
        .fields
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        fields,
        vec![
            "spec.forProvider.values.adminui",
            "spec.forProvider.values.deploy.restapi"
        ]
    );
}

#[test]
fn the_same_fleet_gives_no_change() {
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &claims()));
    let p = plan(&labels(), Against::Revision, &base, &base.clone(), vec![]);
    assert!(p.clusters.is_empty());
    assert_eq!(p.unchanged.len(), 3);
    assert!(markdown::render(&p).contains("**no change** to any of the 3 clusters"));
}

#[test]
fn against_live_server_additions_are_ignored_and_strays_are_deleted() {
    let head = snapshot(&tree(&settings("1.18.4"), &CLUSTERS[..1], &claims()[..1]));
    let mut state = LiveState::new();
    for (at, json) in head.clusters["dev-1"].objects.as_ref().unwrap() {
        let mut json = json.clone();
        json["status"] = json!({"conditions": []});
        json["metadata"]["uid"] = json!("1234");
        if at.name == "stackgres-operator" {
            json["spec"]["forProvider"]["chart"]["version"] = json!("1.17.0");
        }
        state.insert(LiveObject::from_json(json).unwrap());
    }
    let stray = json!({"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release", "metadata": {"name": "old", "namespace": "x"}});
    let stray = LiveObject::from_json(stray).unwrap();
    state.insert(stray);
    let live = Snapshot::of_live(&head, [("dev-1".to_string(), Ok(state))].into());
    let p = plan(&labels(), Against::Live, &live, &head, vec![]);
    let c = &p.clusters[0];
    assert_eq!(c.updates.len(), 1);
    assert_eq!(
        c.updates[0].fields[0].path,
        "spec.forProvider.chart.version"
    );
    assert_eq!(c.deletes.len(), 1);
    assert_eq!(c.deletes[0].name, "old");
}

#[test]
fn an_unreachable_cluster_is_reported_not_planned() {
    let head = snapshot(&tree(&settings("1.18.4"), &CLUSTERS[..1], &claims()[..1]));
    let live = Snapshot::of_live(
        &head,
        [("dev-1".to_string(), Err("connection refused".into()))].into(),
    );
    let p = plan(&labels(), Against::Live, &live, &head, vec![]);
    assert_eq!(p.clusters[0].change, ClusterChange::Unreachable);
    assert_eq!(p.clusters[0].error.as_deref(), Some("connection refused"));
}

#[test]
fn an_invalid_head_lists_every_error_and_plans_nothing() {
    let outcome = load(&tree(
        &settings("1.18.4"),
        CLUSTERS,
        &[
            own("a", "nowhere"),
            own("b", "prod-1").raw_spec_field("bogus", json!(1)),
        ],
    ));
    let p = invalid(&labels(), Against::Revision, &outcome.diagnostics);
    assert!(!p.valid);
    assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
    let md = markdown::render(&p);
    assert!(md.contains("the head does not validate"));
    for e in &p.errors {
        assert!(md.contains(&e.to_string()), "{md}");
    }
}

#[test]
fn a_large_plan_folds_its_sections_and_fits_the_size_limit() {
    let clusters: Vec<(String, &str)> = (0..200).map(|i| (format!("c{i:03}"), "prod")).collect();
    let cl: Vec<(&str, &str)> = clusters.iter().map(|(n, e)| (n.as_str(), *e)).collect();
    let claims: Vec<Claim> = clusters
        .iter()
        .map(|(n, _)| own(&format!("x{n}"), n))
        .collect();
    let base = snapshot(&tree(&settings("1.18.4"), &cl, &claims));
    let head = snapshot(&tree(&settings("1.19.0"), &cl, &claims));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    let md = markdown::render_with_limit(&p, 20_000);
    assert!(md.len() <= 20_000, "{}", md.len());
    assert!(md.starts_with(markdown::MARKER));
    assert!(md.contains("<details><summary><b>c000</b>"));
    assert!(!md.contains("<details open>"));
    assert!(md.contains("more cluster sections left out to fit a comment"));
    assert!(
        md.contains("| 2 prod | c199 | changed | 0 | 1 | 0 |"),
        "the table lists every cluster"
    );
}

#[test]
fn relabelled_clusters_gain_and_lose_a_selector_claim_with_its_objects() {
    use crate::testing::selector_claim;
    let db = [selector_claim("db", &[("env", "prod")]).install_namespace("db")];
    let base = snapshot(&tree(&settings("1.18.4"), CLUSTERS, &db));
    let relabelled = [("dev-1", "prod"), ("prod-1", "retired"), ("qa-1", "qa")];
    let head = snapshot(&tree(&settings("1.18.4"), &relabelled, &db));
    let p = plan(&labels(), Against::Revision, &base, &head, vec![]);
    let moves: Vec<_> = p
        .clusters
        .iter()
        .map(|c| {
            let names = |m: &[ClaimMove]| -> Vec<(String, usize)> {
                m.iter()
                    .map(|m| (m.claim.clone(), m.objects.len()))
                    .collect()
            };
            (
                c.name.as_str(),
                names(&c.gains),
                names(&c.loses),
                c.creates.len(),
                c.deletes.len(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("dev-1", vec![("default/db".to_string(), 3)], vec![], 3, 0),
            ("prod-1", vec![], vec![("default/db".to_string(), 3)], 0, 3),
        ]
    );
    assert_eq!(p.unchanged, vec!["qa-1"]);
    let md = markdown::render(&p);
    assert!(
        md.contains("dev-1 gains `default/db`: its 3 objects are created."),
        "{md}"
    );
    assert!(
        md.contains("prod-1 loses `default/db`: its 3 objects are pruned."),
        "{md}"
    );
}

#[test]
fn the_plan_lists_the_gates_and_windows_of_the_waves_the_change_touches() {
    let gated = |stackgres: &str| {
        fleet("main")
            .pin("stackgres-operator", stackgres)
            .wave(wave("dev", &[("env", "dev")]).window("allow", "0 9 * * 1-5", "8h"))
            .wave(
                wave("prod", &[("env", "prod")])
                    .gate_max(
                        "errors",
                        "sum(rate(e{cluster=~\"$wave_clusters\"}[5m]))",
                        1.0,
                    )
                    .window("deny", "0 12 * * 5", "12h"),
            )
    };
    let claims = [own("b", "prod-1")];
    let base = snapshot(&tree(&gated("1.18.4"), CLUSTERS, &claims));
    let head_tree = tree(&gated("1.18.5"), CLUSTERS, &claims);
    let head_fleet = load(&head_tree).fleet.unwrap();
    let mut p = plan(
        &labels(),
        Against::Revision,
        &base,
        &Snapshot::of_fleet(&head_fleet),
        vec![],
    );
    p.rollout = rules::rules(&head_fleet.settings, &p);
    // Only prod-1 carries a claim, so only prod changes: dev's window is not met.
    assert_eq!(
        p.rollout,
        vec![rules::WaveRules {
            wave: "prod".into(),
            changed: 1,
            batches: 1,
            requires_approval: false,
            gates: vec![
                "errors: sum(rate(e{cluster=~\"$wave_clusters\"}[5m])) (threshold max 1)".into()
            ],
            windows: vec!["deny 0 12 * * 5 for 12h (UTC)".into()],
            at_least_ms: 0,
        }]
    );
    let md = markdown::render(&p);
    assert!(
        md.contains("- wave **prod**: 1 cluster; gate `errors: sum(rate(e{cluster=~\"$wave_clusters\"}[5m])) (threshold max 1)`; window `deny 0 12 * * 5 for 12h (UTC)`"),
        "{md}"
    );
}

#[test]
fn the_plan_counts_batches_and_approvals_and_a_floor_for_the_rollout_time() {
    let clusters: &[(&str, &str)] = &[
        ("dev-1", "dev"),
        ("prod-1", "prod"),
        ("prod-2", "prod"),
        ("prod-3", "prod"),
        ("prod-4", "prod"),
        ("prod-5", "prod"),
    ];
    let batched = |stackgres: &str| {
        fleet("main")
            .pin("stackgres-operator", stackgres)
            .wave(wave("dev", &[("env", "dev")]).bake_time("5m"))
            .wave(
                wave("prod", &[("env", "prod")])
                    .max_unavailable("40%")
                    .batch_bake_time("2m")
                    .bake_time("10m")
                    .require_approval(),
            )
    };
    let claims: Vec<Claim> = clusters
        .iter()
        .map(|(c, _)| own(&format!("x-{c}"), c))
        .collect();
    let base = snapshot(&tree(&batched("1.18.4"), clusters, &claims));
    let head_tree = tree(&batched("1.18.5"), clusters, &claims);
    let head_fleet = load(&head_tree).fleet.unwrap();
    let mut p = plan(
        &labels(),
        Against::Revision,
        &base,
        &Snapshot::of_fleet(&head_fleet),
        vec![],
    );
    p.rollout = rules::rules(&head_fleet.settings, &p);
    let prod = &p.rollout[1];
    // Five changed clusters, two at a time: three batches, two bakes between them.
    assert_eq!((prod.changed, prod.batches), (5, 3), "{prod:?}");
    assert!(prod.requires_approval);
    assert_eq!(prod.at_least_ms, (2 * 2 + 10) * 60_000);
    assert_eq!(rules::at_least_ms(&p.rollout), (5 + 14) * 60_000);
    let md = markdown::render(&p);
    assert!(md.contains("(at least 19m once started"), "{md}");
    assert!(
        md.contains("- wave **prod**: 5 clusters in 3 batches, waits for approval, at least 14m"),
        "{md}"
    );
}
