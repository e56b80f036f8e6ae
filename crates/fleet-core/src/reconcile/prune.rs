//! Removing what the fleet no longer renders, in the safe order of SPEC 1.5 and 2.2: the
//! Atlas Release first, then the Usage, then the StackGres Release once no Usage protects
//! it. Each pass deletes only the first step still present, so whatever state an
//! interruption leaves, the next pass continues from it in the same order.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{Chart, ClaimKey};
use crate::render::{ObjectKind, ObjectRef};

use super::diff::{Action, DeleteReason};
use super::live::{LiveObject, LiveState};
use super::ownership::Inventory;

/// A revision or pass that would remove too many claims at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MassPrune {
    pub removed: usize,
    pub total: usize,
    pub max_fraction: f64,
}

impl std::fmt::Display for MassPrune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "would remove {} of {} claims, more than the allowed share {}; set spec.prune.allowMassPrune in fleet.yaml or pass --allow-mass-prune",
            self.removed, self.total, self.max_fraction
        )
    }
}

/// The mass-prune guard: removing more than `max_fraction` of `before` is refused unless
/// allowed. Removing a single claim always goes ahead, even a fleet's or cluster's only one.
pub fn check_mass_prune<T: Ord>(
    before: &BTreeSet<T>,
    after: &BTreeSet<T>,
    max_fraction: f64,
    allowed: bool,
) -> Result<(), MassPrune> {
    let removed = before.difference(after).count();
    let total = before.len();
    if allowed || removed <= 1 || (removed as f64) <= max_fraction * total as f64 {
        return Ok(());
    }
    Err(MassPrune {
        removed,
        total,
        max_fraction,
    })
}

/// Position in the safe deletion order.
fn rank(object: &LiveObject) -> u8 {
    match (object.object_ref.kind, object.chart()) {
        (ObjectKind::Release, Some(Chart::Atlas)) => 0,
        (ObjectKind::Usage, _) => 1,
        (ObjectKind::Release, _) => 2,
    }
}

/// The claim a live object belongs to, from its namespace and claim label.
pub fn owner(object: &LiveObject) -> ClaimKey {
    ClaimKey {
        namespace: object.object_ref.namespace.clone(),
        name: object.claim_name().unwrap_or_default().to_string(),
    }
}

/// Live objects the inventory owns that no desired object accounts for, by owning claim.
pub fn stale_groups<'a>(
    live: &'a LiveState,
    inventory: &Inventory<'_>,
    desired: &BTreeSet<ObjectRef>,
) -> BTreeMap<ClaimKey, Vec<&'a LiveObject>> {
    let mut groups: BTreeMap<ClaimKey, Vec<&LiveObject>> = BTreeMap::new();
    for object in live.values() {
        if inventory.owns(object) && !desired.contains(&object.object_ref) {
            groups.entry(owner(object)).or_default().push(object);
        }
    }
    groups
}

/// The deletions of this pass for the stale objects of one claim: those of the earliest
/// step still present. An object already being deleted holds the later steps back.
pub fn next_deletions(group: &[&LiveObject], live: &LiveState) -> Vec<Action> {
    let Some(step) = group.iter().map(|o| rank(o)).min() else {
        return Vec::new();
    };
    group
        .iter()
        .filter(|o| rank(o) == step && !o.terminating())
        .filter(|o| !protected(o, live))
        .map(|o| Action::Delete {
            object: o.object_ref.clone(),
            reason: DeleteReason::Prune,
        })
        .collect()
}

/// A Release that a live Usage names in `spec.of` cannot go yet.
fn protected(object: &LiveObject, live: &LiveState) -> bool {
    object.object_ref.kind == ObjectKind::Release
        && live.values().any(|u| {
            u.object_ref.kind == ObjectKind::Usage
                && u.object_ref.namespace == object.object_ref.namespace
                && u.usage_of() == Some(object.object_ref.name.as_str())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::live::fixtures::{served, state};
    use crate::reconcile::tests::{claim, rendered};

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_guard_lets_small_removals_and_single_claims_through() {
        let cases = [
            (
                "nothing removed",
                set(&["a", "b"]),
                set(&["a", "b"]),
                false,
                true,
            ),
            ("one of two", set(&["a", "b"]), set(&["a"]), false, true),
            ("the only claim", set(&["a"]), set(&[]), false, true),
            (
                "two of three",
                set(&["a", "b", "c"]),
                set(&["a"]),
                false,
                false,
            ),
            (
                "all of four",
                set(&["a", "b", "c", "d"]),
                set(&[]),
                false,
                false,
            ),
            (
                "all of four, allowed",
                set(&["a", "b", "c", "d"]),
                set(&[]),
                true,
                true,
            ),
            (
                "two of four",
                set(&["a", "b", "c", "d"]),
                set(&["a", "b"]),
                false,
                true,
            ),
        ];
        for (name, before, after, allowed, ok) in cases {
            assert_eq!(
                check_mass_prune(&before, &after, 0.5, allowed).is_ok(),
                ok,
                "{name}"
            );
        }
    }

    /// The three objects of a claim as a cluster serves them.
    fn claim_objects(name: &str) -> Vec<LiveObject> {
        rendered(&claim(name, "c1"), true)
            .iter()
            .map(|o| served(o.to_json(), Some(true)))
            .collect()
    }

    fn deleted(actions: &[Action]) -> Vec<String> {
        actions.iter().map(|a| a.object_ref().to_string()).collect()
    }

    #[test]
    fn a_removed_claim_goes_atlas_first_then_the_usage_then_stackgres() {
        let mut live = state(claim_objects("gone"));
        let mut order = Vec::new();
        for _ in 0..4 {
            let groups = stale_groups(&live, &inventory("default", "c1"), &BTreeSet::new());
            let Some(group) = groups.values().next() else {
                break;
            };
            let actions = next_deletions(group, &live);
            assert_eq!(actions.len(), 1, "one step per pass");
            let step = actions[0].object_ref();
            order.push(step.to_string());
            live.remove(&step);
        }
        assert_eq!(
            order,
            vec![
                "Release default/atlas-operator",
                "Usage default/gone-delete-atlas-operator-before-stackgres-operator",
                "Release default/stackgres-operator",
            ]
        );
    }

    #[test]
    fn an_interrupted_prune_waits_for_a_terminating_step_and_then_resumes() {
        let mut live = state(claim_objects("gone"));
        let atlas = ObjectRef {
            kind: ObjectKind::Release,
            name: "atlas-operator".into(),
            namespace: "default".into(),
        };
        live.get_mut(&atlas)
            .unwrap()
            .edit(|j| j["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
        let groups = stale_groups(&live, &inventory("default", "c1"), &BTreeSet::new());
        let group = groups.values().next().unwrap();
        assert!(next_deletions(group, &live).is_empty());
        live.remove(&atlas);
        let groups = stale_groups(&live, &inventory("default", "c1"), &BTreeSet::new());
        assert_eq!(
            deleted(&next_deletions(groups.values().next().unwrap(), &live)),
            vec!["Usage default/gone-delete-atlas-operator-before-stackgres-operator"]
        );
    }

    #[test]
    fn stackgres_protected_by_a_usage_of_a_kept_claim_stays() {
        let objects = claim_objects("kept");
        let live = state(objects.clone());
        let usage_only: BTreeSet<ObjectRef> = objects
            .iter()
            .filter(|o| o.object_ref.kind == ObjectKind::Usage)
            .map(|o| o.object_ref.clone())
            .collect();
        let groups = stale_groups(&live, &inventory("default", "c1"), &usage_only);
        let group = groups.values().next().unwrap();
        assert_eq!(
            deleted(&next_deletions(group, &live)),
            vec!["Release default/atlas-operator"]
        );
        let mut live = live;
        live.retain(|l| l.object_ref.name != "atlas-operator");
        let groups = stale_groups(&live, &inventory("default", "c1"), &usage_only);
        assert!(next_deletions(groups.values().next().unwrap(), &live).is_empty());
    }

    fn inventory(fleet: &'static str, cluster: &'static str) -> Inventory<'static> {
        Inventory {
            fleet,
            former: &[],
            cluster,
        }
    }

    #[test]
    fn objects_of_another_fleet_or_another_cluster_entry_are_never_stale() {
        let live = state(claim_objects("gone"));
        assert!(stale_groups(&live, &inventory("other-fleet", "c1"), &BTreeSet::new()).is_empty());
        assert!(stale_groups(&live, &inventory("default", "c2"), &BTreeSet::new()).is_empty());
        assert_eq!(
            stale_groups(&live, &inventory("default", "c1"), &BTreeSet::new()).len(),
            1
        );
    }
}
