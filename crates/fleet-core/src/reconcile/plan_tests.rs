//! Passes over one cluster, played out against an in-memory cluster.

use std::collections::BTreeSet;

use serde_json::json;

use super::live::fixtures::served;
use super::tests::{files, fleet, loaded};
use super::*;
use crate::model::fleet::DriftPolicy;
use crate::testing::{claim, cluster, Fleet};

/// A cluster that stores what is applied and marks Releases Ready or not.
struct FakeCluster {
    live: LiveState,
    seen: BTreeSet<ObjectRef>,
    releases_ready: bool,
    /// The fleet's earlier names, as the agent passes them after a rename.
    former: Vec<String>,
    /// Whether the cluster serves Usages.
    usage_api: bool,
}

impl FakeCluster {
    fn new() -> Self {
        Self {
            live: LiveState::new(),
            seen: BTreeSet::new(),
            releases_ready: true,
            former: Vec::new(),
            usage_api: true,
        }
    }

    fn plan(&self, fleet: &LoadedFleet, cluster: &str) -> ClusterPlan {
        self.plan_with(fleet, cluster, false)
    }

    fn plan_with(&self, fleet: &LoadedFleet, cluster: &str, guard: bool) -> ClusterPlan {
        self.plan_entry(fleet, &fleet.clusters[cluster], guard)
    }

    /// A pass for `entry`, which `fleet` may no longer have (a cluster leaving the fleet).
    fn plan_entry(&self, fleet: &LoadedFleet, entry: &Cluster, guard: bool) -> ClusterPlan {
        let seen = |at: &ObjectRef| self.seen.contains(at);
        plan_cluster(&ClusterInput {
            fleet,
            cluster: entry,
            live: &self.live,
            seen: &seen,
            guard_prune: guard,
            allow_mass_prune: false,
            former_names: &self.former,
            usage_api: self.usage_api,
            applied_by: None,
        })
    }

    fn carry_out(&mut self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Apply { object, .. } => {
                    let ready =
                        (object.at.kind == ObjectKind::Release).then_some(self.releases_ready);
                    let live = served(serde_json::from_str(object.json.get()).unwrap(), ready);
                    self.seen.insert(live.object_ref.clone());
                    self.live.insert(live);
                }
                Action::Delete { object, .. } => {
                    // The worker forgets what it deletes itself, so a later re-creation
                    // (the Usage gate opening again) is not mistaken for drift.
                    self.seen.remove(object);
                    self.live.remove(object);
                }
                Action::ReportDrift { .. } => {}
            }
        }
    }

    /// Passes until nothing is left to write; returns every action taken.
    fn converge(&mut self, fleet: &LoadedFleet, cluster: &str) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..10 {
            let actions: Vec<Action> = self
                .plan(fleet, cluster)
                .actions
                .into_iter()
                .filter(Action::writes)
                .collect();
            if actions.is_empty() {
                return all;
            }
            self.carry_out(&actions);
            all.extend(actions);
        }
        panic!("did not converge: {all:?}");
    }
}

fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| {
            let verb = match a {
                Action::Apply { .. } => "apply",
                Action::Delete { .. } => "delete",
                Action::ReportDrift { .. } => "report",
            };
            format!("{verb} {}", a.object_ref())
        })
        .collect()
}

/// The claim `app`'s objects deleted, in the safe order.
const APP_PRUNED: [&str; 3] = [
    "delete Release app/atlas-operator",
    "delete Usage app/app-delete-atlas-operator-before-stackgres-operator",
    "delete Release app/stackgres-operator",
];

/// One claim, `app`, on cluster `c1`, applied and ready there.
fn converged_app() -> (LoadedFleet, FakeCluster) {
    let f = fleet(&["c1"], &[("app", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.converge(&f, "c1");
    (f, cluster)
}

/// An object of the claim `app`, which lives in namespace `app`.
fn in_app(kind: ObjectKind, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        name: name.into(),
        namespace: "app".into(),
    }
}

#[test]
fn a_new_claim_gets_its_releases_first_and_its_usage_once_both_are_ready() {
    let f = fleet(&["c1"], &[("app", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.releases_ready = false;
    let first = cluster.plan(&f, "c1");
    assert_eq!(
        names(&first.actions),
        vec![
            "apply Release app/stackgres-operator",
            "apply Release app/atlas-operator"
        ]
    );
    cluster.carry_out(&first.actions);
    let waiting = cluster.plan(&f, "c1");
    assert!(waiting.actions.is_empty(), "{:?}", waiting.actions);
    assert!(!waiting.claims[0].readiness.is_ready());
    assert!(!waiting.claims[0].usage_present);

    for r in cluster.live.values_mut() {
        r.edit(|j| j["status"]["conditions"][1]["status"] = json!("True"));
    }
    let gate_open = cluster.plan(&f, "c1");
    assert_eq!(
        names(&gate_open.actions),
        vec!["apply Usage app/app-delete-atlas-operator-before-stackgres-operator"]
    );
    cluster.carry_out(&gate_open.actions);
    let steady = cluster.plan(&f, "c1");
    assert!(steady.actions.is_empty());
    assert!(steady.claims[0].readiness.is_ready() && steady.claims[0].usage_present);
}

#[test]
fn a_usage_stays_when_a_release_stops_being_ready() {
    let (f, mut cluster) = converged_app();
    let atlas = in_app(ObjectKind::Release, "atlas-operator");
    cluster
        .live
        .get_mut(&atlas)
        .unwrap()
        .edit(|j| j["status"]["conditions"][1]["status"] = json!("False"));
    let upgrading = cluster.plan(&f, "c1");
    assert!(upgrading.actions.is_empty(), "{:?}", upgrading.actions);
    assert!(!upgrading.claims[0].readiness.is_ready());
    assert!(upgrading.claims[0].usage_present);
}

#[test]
fn a_usage_deleted_while_a_release_is_not_ready_waits_for_the_gate() {
    let (f, mut cluster) = converged_app();
    let usage = in_app(
        ObjectKind::Usage,
        "app-delete-atlas-operator-before-stackgres-operator",
    );
    cluster.live.remove(&usage);
    for r in cluster.live.values_mut() {
        r.edit(|j| j["status"]["conditions"][1]["status"] = json!("False"));
    }
    assert!(cluster.plan(&f, "c1").actions.is_empty());
    for r in cluster.live.values_mut() {
        r.edit(|j| j["status"]["conditions"][1]["status"] = json!("True"));
    }
    assert_eq!(
        names(&cluster.plan(&f, "c1").actions),
        vec![format!("apply {usage}")]
    );
}

#[test]
fn a_hand_edit_is_corrected_or_reported_by_the_cluster_policy() {
    for (policy, verb) in [(None, "apply"), (Some(DriftPolicy::Report), "report")] {
        let c1 = policy.map_or(cluster("c1"), |p| cluster("c1").drift(p));
        let f = loaded(&files(&[], &[("app", "c1")]).with(&c1));
        let mut cluster = FakeCluster::new();
        cluster.converge(&f, "c1");
        let sg = in_app(ObjectKind::Release, "stackgres-operator");
        cluster
            .live
            .get_mut(&sg)
            .unwrap()
            .edit(|j| j["spec"]["forProvider"]["chart"]["version"] = json!("9.9.9"));
        let plan = cluster.plan(&f, "c1");
        assert_eq!(
            names(&plan.actions),
            vec![format!("{verb} Release app/stackgres-operator")]
        );
        assert_eq!(
            plan.claims[0].drift,
            vec![(
                Component::Stackgres,
                Drift::Modified {
                    fields: vec!["spec.forProvider.chart.version".into()],
                    by: None,
                }
            )]
        );
    }
}

#[test]
fn a_removed_claim_is_pruned_in_the_safe_order_while_others_stay() {
    let before = fleet(&["c1"], &[("app", "c1"), ("keep", "c1")]);
    let after = fleet(&["c1"], &[("keep", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.converge(&before, "c1");
    let taken = cluster.converge(&after, "c1");
    assert_eq!(names(&taken), APP_PRUNED);
    assert_eq!(cluster.live.len(), 3);
}

#[test]
fn suspension_of_fleet_cluster_or_claim_stops_writes_but_not_readiness() {
    let f = loaded(&files(&["c1"], &[("app", "c1")]).with(&Fleet::unnamed().suspend(true)));
    let plan = FakeCluster::new().plan(&f, "c1");
    assert_eq!(plan.suspended, Some(Suspension::Fleet));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.claims.len(), 1);

    let f = loaded(&files(&[], &[("app", "c1")]).with(&cluster("c1").suspend(true)));
    let plan = FakeCluster::new().plan(&f, "c1");
    assert_eq!(plan.suspended, Some(Suspension::Cluster));
    assert!(plan.actions.is_empty());

    let f = loaded(
        &files(&["c1"], &[("other", "c1")]).with(&claim("app", "c1").namespace("app").suspended()),
    );
    let plan = FakeCluster::new().plan(&f, "c1");
    assert!(plan.claims.iter().any(|c| c.suspended));
    assert!(
        names(&plan.actions).iter().all(|a| a.contains(" other/")),
        "{:?}",
        plan.actions
    );
}

#[test]
fn the_first_pass_after_a_start_refuses_to_prune_most_of_a_cluster() {
    let before = fleet(&["c1"], &[("a", "c1"), ("b", "c1"), ("c", "c1")]);
    let after = fleet(&["c1"], &[("a", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.converge(&before, "c1");
    let guarded = cluster.plan_with(&after, "c1", true);
    assert_eq!(
        guarded.prune_refused.as_ref().map(|r| (r.removed, r.total)),
        Some((2, 3))
    );
    assert!(guarded.actions.is_empty());
    assert!(!cluster.plan_with(&after, "c1", false).actions.is_empty());
}

#[test]
fn objects_deleted_by_hand_are_drift_and_recreated() {
    let (f, mut cluster) = converged_app();
    cluster
        .live
        .retain(|l| l.object_ref.kind != ObjectKind::Usage);
    let plan = cluster.plan(&f, "c1");
    assert_eq!(
        plan.claims[0].drift,
        vec![(Component::Usage, Drift::Deleted)]
    );
    assert_eq!(
        names(&plan.actions),
        vec!["apply Usage app/app-delete-atlas-operator-before-stackgres-operator"]
    );
}

/// `(verb object, force)` of every apply.
fn forced(actions: &[Action]) -> Vec<(String, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { force, .. } => Some((a.object_ref().to_string(), *force)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_revision_forces_only_under_fleet_force_and_a_drift_correction_always() {
    for fleet_force in [false, true] {
        let f =
            loaded(&files(&["c1"], &[("app", "c1")]).with(&Fleet::unnamed().force(fleet_force)));
        let mut cluster = FakeCluster::new();
        let created = cluster.converge(&f, "c1");
        assert!(
            forced(&created).iter().all(|(_, f)| *f == fleet_force),
            "{created:?}"
        );
        let sg = in_app(ObjectKind::Release, "stackgres-operator");
        cluster
            .live
            .get_mut(&sg)
            .unwrap()
            .edit(|j| j["spec"]["rollbackLimit"] = json!(9));
        assert_eq!(
            forced(&cluster.plan(&f, "c1").actions),
            vec![("Release app/stackgres-operator".to_string(), true)]
        );
    }
}

/// Every delete among `actions`.
fn deletes(actions: &[Action]) -> Vec<String> {
    names(actions)
        .into_iter()
        .filter(|a| a.starts_with("delete"))
        .collect()
}

#[test]
fn a_second_entry_for_the_same_cluster_neither_prunes_nor_takes_over_the_first_ones_objects() {
    // `c2` is a copy of `c1`'s file: the same API server, under another name.
    let (f, cluster) = converged_app();
    let with_copy = fleet(&["c1", "c2"], &[("app", "c1")]);
    let plan = cluster.plan(&with_copy, "c2");
    assert!(plan.actions.is_empty(), "{:?}", names(&plan.actions));
    assert!(cluster.plan(&f, "c1").actions.is_empty());

    // A claim of the copy whose Releases have the same names is held, not applied over
    // the first entry's.
    let clash =
        loaded(&files(&["c1", "c2"], &[("app", "c1")]).with(&claim("app2", "c2").namespace("app")));
    let plan = cluster.plan(&clash, "c2");
    let releases: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.object_ref().kind == ObjectKind::Release)
        .collect();
    assert!(releases.is_empty(), "{releases:?}");
    assert_eq!(plan.held.len(), 2, "{:?}", plan.held);
    assert_eq!(plan.held[0].1.cluster.as_deref(), Some("c1"));
}

#[test]
fn a_renamed_fleet_relabels_its_objects_and_prunes_the_claims_it_dropped() {
    let before = fleet(&["c1"], &[("app", "c1"), ("gone", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.converge(&before, "c1");
    let renamed =
        loaded(&files(&["c1"], &[("app", "c1")]).with(&crate::testing::fleet("payments")));

    // Without the former name the old objects are someone else's: nothing is deleted,
    // and what the fleet renders is held rather than applied over them.
    let plan = cluster.plan(&renamed, "c1");
    assert!(
        deletes(&plan.actions).is_empty(),
        "{:?}",
        names(&plan.actions)
    );
    assert!(!plan.held.is_empty());

    cluster.former = vec!["default".into()];
    let plan = cluster.plan(&renamed, "c1");
    assert!(
        plan.claims.iter().all(|c| c.drift.is_empty()),
        "a rename is not drift: {:?}",
        plan.claims
    );
    let taken = cluster.converge(&renamed, "c1");
    assert_eq!(
        deletes(&taken),
        vec![
            "delete Release gone/atlas-operator",
            "delete Usage gone/gone-delete-atlas-operator-before-stackgres-operator",
            "delete Release gone/stackgres-operator",
        ]
    );
    assert!(cluster.live.values().all(|o| o.fleet() == Some("payments")));
    assert_eq!(cluster.live.len(), 3);
}

#[test]
fn a_cluster_that_left_the_fleet_is_emptied_in_the_safe_order() {
    let before = fleet(&["c1", "c2"], &[("app", "c1"), ("other", "c2")]);
    let entry = before.clusters["c1"].clone();
    let mut cluster = FakeCluster::new();
    cluster.converge(&before, "c1");
    let after = fleet(&["c2"], &[("other", "c2")]);
    let mut taken = Vec::new();
    for _ in 0..5 {
        let actions = cluster.plan_entry(&after, &entry, false).actions;
        cluster.carry_out(&actions);
        taken.extend(actions);
    }
    assert_eq!(names(&taken), APP_PRUNED);
    assert!(cluster.live.is_empty());
}

#[test]
fn objects_from_before_the_cluster_label_are_taken_over_when_desired_and_never_pruned() {
    let (f, mut cluster) = converged_app();
    // As an older psql-fleet applied them: no cluster label, so another desired hash.
    let unlabel = |o: &mut LiveObject| {
        o.edit(|j| {
            j["metadata"]["labels"]
                .as_object_mut()
                .unwrap()
                .remove(crate::api::LABEL_CLUSTER);
            j["metadata"]["annotations"][diff::ANNOTATION_DESIRED_HASH] = json!("0ld");
        })
    };
    cluster.live.values_mut().for_each(unlabel);
    let plan = cluster.plan(&f, "c1");
    assert_eq!(plan.actions.iter().filter(|a| a.writes()).count(), 3);
    assert!(deletes(&plan.actions).is_empty());
    assert!(
        plan.claims[0].drift.is_empty(),
        "{:?}",
        plan.claims[0].drift
    );

    let without_app = fleet(&["c1"], &[]);
    assert!(deletes(&cluster.plan(&without_app, "c1").actions).is_empty());
}

#[test]
fn a_cluster_without_usages_gets_its_releases_alone_and_prunes_atlas_first() {
    let f = fleet(&["c1"], &[("app", "c1")]);
    let mut cluster = FakeCluster::new();
    cluster.usage_api = false;
    let taken = cluster.converge(&f, "c1");
    assert_eq!(
        names(&taken),
        vec![
            "apply Release app/stackgres-operator",
            "apply Release app/atlas-operator",
        ]
    );
    let taken = cluster.converge(&fleet(&["c1"], &[]), "c1");
    assert_eq!(
        names(&taken),
        vec![
            "delete Release app/atlas-operator",
            "delete Release app/stackgres-operator",
        ]
    );
}
