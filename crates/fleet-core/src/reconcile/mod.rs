//! The reconcile decisions, pure: from a loaded fleet and what a cluster holds to the
//! actions that bring the cluster to the desired state, and the report of where each claim
//! stands. No client, no I/O: the agent's cluster workers (`psql_fleet::cluster`) feed
//! live state in and carry actions out.

pub mod backoff;
pub mod compact_json;
pub mod contest;
pub mod diff;
pub mod live;
pub mod ownership;
pub mod prune;
pub mod readiness;
pub mod writers;

use std::collections::BTreeSet;

use serde::Serialize;

pub use backoff::Backoff;
pub use contest::{Contest, WriteBudget};
pub use diff::{Action, ApplyReason, DeleteReason, Drift};
pub use live::{LiveObject, LiveState, ServedObject};
pub use ownership::{Holder, Inventory, Ownership};
pub use prune::{check_mass_prune, MassPrune};
pub use readiness::{ClaimReadiness, ReleaseReadiness};
pub use writers::{ManagerKind, Writer};

use crate::fleetdir::LoadedFleet;
use crate::model::fleet::{ChartVersions, DriftPolicy};
use crate::model::{Claim, ClaimKey, Cluster};
use crate::render::{claim_object_refs, render_claim, ObjectKind, ObjectRef, RenderContext};

/// Which of a claim's objects; the `component` metric label (SPEC 2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Stackgres,
    Atlas,
    Usage,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Stackgres, Component::Atlas, Component::Usage];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Stackgres => "stackgres",
            Component::Atlas => "atlas",
            Component::Usage => "usage",
        }
    }

    /// Which component of `claim` lives at `at`, if any.
    pub fn of(claim: &Claim, at: &ObjectRef) -> Option<Component> {
        let [sg, atlas, usage] = claim_object_refs(claim);
        [
            (sg, Self::Stackgres),
            (atlas, Self::Atlas),
            (usage, Self::Usage),
        ]
        .into_iter()
        .find(|(r, _)| r == at)
        .map(|(_, c)| c)
    }
}

/// Why nothing is written to a cluster or a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Suspension {
    Fleet,
    Cluster,
    Claim,
}

/// What one pass decides for one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterPlan {
    /// Set when the fleet or the cluster is suspended: `actions` is then empty.
    pub suspended: Option<Suspension>,
    pub drift_policy: DriftPolicy,
    /// In order: applies and drift reports claim by claim, then deletions.
    pub actions: Vec<Action>,
    pub claims: Vec<ClaimPlan>,
    /// Set when the per-cluster guard held pruning back this pass.
    pub prune_refused: Option<MassPrune>,
    /// Desired objects left alone because another fleet or cluster entry holds them.
    pub held: Vec<(ObjectRef, Holder)>,
}

/// Where one claim stands on its cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimPlan {
    pub key: ClaimKey,
    pub readiness: ClaimReadiness,
    pub usage_present: bool,
    pub suspended: bool,
    pub drift: Vec<(Component, Drift)>,
    pub versions: ChartVersions,
}

/// What a pass over one cluster needs.
pub struct ClusterInput<'a> {
    pub fleet: &'a LoadedFleet,
    pub cluster: &'a Cluster,
    pub live: &'a LiveState,
    /// Whether an object was seen on the cluster before (so its absence is a deletion).
    pub seen: &'a dyn Fn(&ObjectRef) -> bool,
    /// Apply the per-cluster mass-prune guard: set while the agent has not yet accepted a
    /// revision to compare with (after a start), so that a first revision cannot wipe a
    /// cluster the fleet-wide guard never saw.
    pub guard_prune: bool,
    pub allow_mass_prune: bool,
    /// The fleet's earlier names, whose objects this fleet relabels or prunes.
    pub former_names: &'a [String],
    /// Whether the cluster serves Usages: without them the Releases are applied alone.
    pub usage_api: bool,
    /// Who applies, written on each object applied beside its desired hash.
    pub applied_by: Option<&'a str>,
}

/// The drift policy of a cluster: its own, else the fleet's.
pub fn drift_policy(fleet: &LoadedFleet, cluster: &Cluster) -> DriftPolicy {
    cluster
        .spec
        .drift
        .as_ref()
        .map(|d| d.policy)
        .unwrap_or_else(|| fleet.settings.drift_policy())
}

/// One pass over one cluster.
pub fn plan_cluster(input: &ClusterInput<'_>) -> ClusterPlan {
    let ClusterInput {
        fleet,
        cluster,
        live,
        ..
    } = input;
    let ctx = RenderContext::for_cluster(&fleet.settings, cluster);
    let inventory = Inventory {
        fleet: &fleet.settings.name,
        former: input.former_names,
        cluster: &cluster.name,
    };
    let policy = drift_policy(fleet, cluster);
    let mut plan = ClusterPlan {
        drift_policy: policy,
        ..ClusterPlan::default()
    };
    let mut desired_refs: BTreeSet<ObjectRef> = BTreeSet::new();
    let mut suspended_claims: BTreeSet<ClaimKey> = BTreeSet::new();
    for claim in fleet.claims_of(&cluster.name) {
        let readiness = ClaimReadiness::observe(claim, live);
        let objects = render_claim(claim, &ctx, readiness.observed()).into_objects();
        let mut drift = Vec::new();
        for object in objects {
            if !input.usage_api && object.kind() == ObjectKind::Usage {
                continue;
            }
            let at = object.object_ref();
            if let Some(Ownership::Foreign(holder)) = live.get(&at).map(|l| inventory.of(l)) {
                plan.held.push((at.clone(), holder));
                desired_refs.insert(at);
                continue;
            }
            // Serialised once: the diff, the drift check and the apply all read this.
            let object = diff::Serialized::new(object);
            let verdict = diff::diff_object(&object, live.get(&at), (input.seen)(&at));
            if let diff::ObjectDiff::Drift(d) = &verdict {
                if let Some(component) = Component::of(claim, &at) {
                    drift.push((component, d.clone()));
                }
            }
            let force = fleet.settings.force();
            if let Some(action) = diff::action_for(object, verdict, policy, force, input.applied_by)
            {
                if !claim.suspended {
                    plan.actions.push(action);
                }
            }
            desired_refs.insert(at);
        }
        if claim.suspended {
            suspended_claims.insert(claim.key());
            // A suspended claim's objects stay as they are, the Usage included.
            desired_refs.extend(claim_object_refs(claim));
        }
        let usage_ref = &claim_object_refs(claim)[2];
        // A Usage that exists stays while its claim does, even when a Release stops being
        // Ready (an upgrade): Crossplane holds a Usage's deletion until its `by` Release is
        // gone, so deleting it here would leave it terminating for good, never re-created,
        // and StackGres unprotected meanwhile. Only pruning the claim removes it, Atlas first.
        desired_refs.insert(usage_ref.clone());
        plan.claims.push(ClaimPlan {
            key: claim.key(),
            readiness,
            usage_present: live.get(usage_ref).is_some_and(|u| !u.terminating()),
            suspended: claim.suspended,
            drift,
            versions: ctx.versions.clone(),
        });
    }

    let groups = prune::stale_groups(live, &inventory, &desired_refs);
    let kept: BTreeSet<ClaimKey> = fleet.claims_of(&cluster.name).map(Claim::key).collect();
    if input.guard_prune {
        let live_claims: BTreeSet<ClaimKey> = live
            .values()
            .filter(|o| inventory.owns(o))
            .map(prune::owner)
            .collect();
        let after: BTreeSet<ClaimKey> = live_claims.intersection(&kept).cloned().collect();
        let allowed = input.allow_mass_prune || fleet.settings.allow_mass_prune();
        if let Err(refused) = check_mass_prune(
            &live_claims,
            &after,
            fleet.settings.max_prune_fraction(),
            allowed,
        ) {
            plan.prune_refused = Some(refused);
        }
    }
    for (owner, group) in &groups {
        let removed = !kept.contains(owner);
        if suspended_claims.contains(owner) || (removed && plan.prune_refused.is_some()) {
            continue;
        }
        plan.actions.extend(prune::next_deletions(group, live));
    }

    if fleet.settings.suspended() {
        plan.suspended = Some(Suspension::Fleet);
    } else if cluster.suspended() {
        plan.suspended = Some(Suspension::Cluster);
    }
    if plan.suspended.is_some() {
        plan.actions.clear();
    }
    plan
}

/// Every claim of a fleet with its cluster: what the fleet-wide mass-prune guard compares
/// between two revisions.
pub fn fleet_claims(fleet: &LoadedFleet) -> BTreeSet<(String, ClaimKey)> {
    fleet
        .claims
        .iter()
        .map(|c| (c.cluster().to_string(), c.key()))
        .collect()
}

/// Whether an object is one this kind of plan writes; used to filter watch events.
pub fn is_owned_kind(kind: ObjectKind) -> bool {
    matches!(kind, ObjectKind::Release | ObjectKind::Usage)
}

#[cfg(test)]
mod plan_tests;

#[cfg(test)]
pub(crate) mod tests {
    //! Fleets and claims for the tests of this module, built through the real loader.

    use serde_json::Value;

    use crate::fleetdir::{load, LoadedFleet};
    use crate::model::Claim;
    use crate::render::{render_claim, DesiredObject, Observed, RenderContext};
    use crate::testing::{self, cluster, FleetFiles};

    /// `files` through the real loader; fails the test with its diagnostics.
    pub fn loaded(files: &FleetFiles) -> LoadedFleet {
        let outcome = load(&files.tree());
        outcome
            .fleet
            .unwrap_or_else(|| panic!("{:?}", outcome.diagnostics))
    }

    /// The files of a fleet of `clusters` (no labels) and `(claim, cluster)` pairs, each
    /// claim in a namespace of its own named after it; no `fleet.yaml`.
    pub fn files(clusters: &[&str], claims: &[(&str, &str)]) -> FleetFiles {
        let mut files = FleetFiles::new();
        for c in clusters {
            files.add(&cluster(c));
        }
        for (name, cluster) in claims {
            files.add(
                &testing::claim(name, cluster)
                    .namespace(name)
                    .install_namespace(name),
            );
        }
        files
    }

    /// [`files`], loaded.
    pub fn fleet(clusters: &[&str], claims: &[(&str, &str)]) -> LoadedFleet {
        loaded(&files(clusters, claims))
    }

    /// One claim named `name` in the `default` namespace.
    pub fn claim(name: &str, cluster: &str) -> Claim {
        let files = FleetFiles::new()
            .with(&testing::cluster(cluster))
            .with(&testing::claim(name, cluster));
        loaded(&files).claims.remove(0)
    }

    pub fn ctx() -> RenderContext {
        RenderContext::for_cluster(
            &crate::model::FleetSettings::default(),
            &crate::model::Cluster {
                origin: crate::model::Origin {
                    file: "clusters/c.yaml".into(),
                    document: 0,
                },
                name: "c1".into(),
                labels: Default::default(),
                spec: serde_yaml::from_str("kubeconfig: c.yaml").unwrap(),
                kubeconfig_secret: None,
            },
        )
    }

    /// The claim's objects: StackGres, Atlas and, when `usage`, the Usage.
    pub fn rendered(claim: &Claim, usage: bool) -> Vec<DesiredObject> {
        let observed = if usage {
            Observed::BOTH_READY
        } else {
            Observed::default()
        };
        render_claim(claim, &ctx(), observed).into_objects()
    }

    /// The rendered Release `release` of `claim` as JSON.
    pub fn desired_json(claim: &Claim, release: &str) -> Value {
        rendered(claim, false)
            .into_iter()
            .map(|o| o.to_json())
            .find(|j| j["metadata"]["name"] == release)
            .unwrap()
    }
}
