//! `psql-fleet plan`, the decision part: what a change of the fleet does to each cluster.
//! Pure: it takes two [`Snapshot`]s (the rendered base and head, or the head and what the
//! clusters hold) and returns a [`Plan`], which [`markdown`] shows as a pull-request comment
//! and which serializes as the documented JSON (`docs/plan-json.md`).
//!
//! Objects are rendered as if both Releases were Ready, so a claim's Usage shows up in the
//! plan although the agent applies it only once its gate opens.

pub mod fields;
pub mod markdown;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::api::LABEL_PSQL;
use crate::fleetdir::LoadedFleet;
use crate::model::Diagnostic;
use crate::reconcile::live::LiveState;
use crate::render::{render_cluster, ObjectRef, Observed};

pub use fields::{FieldChange, Scope};

/// The `format` of the JSON plan; bumped on any incompatible change.
pub const FORMAT: &str = "psql-fleet/plan/v1";

/// One side of the comparison: per cluster, its wave and its objects as JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Wave names in rollout order.
    pub waves: Vec<String>,
    pub clusters: BTreeMap<String, ClusterSnapshot>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSnapshot {
    /// `None`: the implicit last wave of clusters no wave selects.
    pub wave: Option<String>,
    /// The objects, or why they could not be read (a live cluster out of reach).
    pub objects: Result<BTreeMap<ObjectRef, Value>, String>,
}

impl Snapshot {
    /// The fleet rendered: every cluster's desired objects, pins and overrides applied.
    pub fn of_fleet(fleet: &LoadedFleet) -> Snapshot {
        let settings = &fleet.settings;
        let clusters = fleet
            .clusters
            .values()
            .map(|cluster| {
                let objects =
                    render_cluster(settings, cluster, fleet.claims_of(&cluster.name), |_| {
                        Observed::BOTH_READY
                    })
                    .into_iter()
                    .map(|o| (o.object_ref(), o.to_json()))
                    .collect();
                let snapshot = ClusterSnapshot {
                    wave: settings.wave_of(&cluster.labels).map(|w| w.name.clone()),
                    objects: Ok(objects),
                };
                (cluster.name.clone(), snapshot)
            })
            .collect();
        Snapshot {
            waves: settings.waves.iter().map(|w| w.name.clone()).collect(),
            clusters,
        }
    }

    /// What the head's clusters hold: their objects carrying the fleet's inventory label,
    /// or why a cluster could not be read. Waves are the head's.
    pub fn of_live(head: &Snapshot, live: BTreeMap<String, Result<LiveState, String>>) -> Self {
        let clusters = live
            .into_iter()
            .map(|(name, state)| {
                let wave = head.clusters.get(&name).and_then(|c| c.wave.clone());
                let objects = state.map(|s| {
                    s.into_iter()
                        .map(|o| (o.object_ref.clone(), o.into_json()))
                        .collect()
                });
                (name, ClusterSnapshot { wave, objects })
            })
            .collect();
        Snapshot {
            waves: head.waves.clone(),
            clusters,
        }
    }
}

/// What the plan compares the head with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    /// The base revision, rendered.
    Revision,
    /// The objects on the clusters.
    Live,
}

/// The whole plan. Its JSON form is the stable interface (`docs/plan-json.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub format: &'static str,
    pub base: String,
    pub head: String,
    pub against: Against,
    /// False when the head does not validate; `errors` says why and nothing else is set.
    pub valid: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Set when the base does not validate: the plan then treats it as empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_invalid: Option<String>,
    /// With `plan --trusted-keys`: whether the head commit is signed by a trusted key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_signature: Option<HeadSignature>,
    pub summary: Summary,
    /// Clusters with a change, in rollout order (wave, then name).
    pub clusters: Vec<ClusterPlan>,
    /// Clusters with no change, by name.
    pub unchanged: Vec<String>,
    /// The gates and windows the changed waves will meet (see [`rules::rules`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<rules::WaveRules>,
}

/// Whether the head commit is signed by a trusted key, as the agent under
/// `--verify-commits` would judge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadSignature {
    pub trusted: bool,
    /// `signed by <who> (<format> key <fingerprint>)` when trusted, else why not.
    pub detail: String,
    /// When not trusted: `unsigned`, `untrusted_key`, `bad_signature` or `unreadable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub clusters: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
}

/// How a cluster changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterChange {
    /// The cluster joins the fleet.
    Added,
    /// It stays, and some of its objects change.
    Changed,
    /// It leaves the fleet: psql-fleet stops managing it and leaves its objects in place.
    Removed,
    /// Its live objects could not be read (`--live` only).
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    pub name: String,
    /// `null` for the implicit last wave.
    pub wave: Option<String>,
    /// 1-based rollout position of the wave; the implicit last wave is `waves + 1`.
    pub wave_index: usize,
    pub change: ClusterChange,
    pub creates: Vec<ObjectRef>,
    pub updates: Vec<ObjectUpdate>,
    pub deletes: Vec<ObjectRef>,
    /// Claims a staying cluster newly carries, with their objects: a new claim, or a
    /// selector claim its labels now match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gains: Vec<ClaimMove>,
    /// Claims a staying cluster no longer carries, with their objects (pruned): a claim
    /// removed, or a selector claim its labels no longer match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loses: Vec<ClaimMove>,
    /// Objects of a removed cluster, left on it unmanaged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmanaged: Vec<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A claim arriving on or leaving a cluster, and the objects that come or go with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimMove {
    /// `namespace/name`.
    pub claim: String,
    pub objects: Vec<ObjectRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectUpdate {
    #[serde(flatten)]
    pub object: ObjectRef,
    pub fields: Vec<FieldChange>,
}

/// The revisions compared, as shown to people (short commit ids or names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub base: String,
    pub head: String,
}

/// The plan for a head that does not validate: every diagnostic, no clusters.
pub fn invalid(labels: &Labels, against: Against, diagnostics: &[Diagnostic]) -> Plan {
    let (errors, warnings) = diagnostics.iter().cloned().partition(Diagnostic::is_error);
    Plan {
        format: FORMAT,
        base: labels.base.clone(),
        head: labels.head.clone(),
        against,
        valid: false,
        errors,
        warnings,
        base_invalid: None,
        head_signature: None,
        summary: Summary::default(),
        clusters: vec![],
        unchanged: vec![],
        rollout: vec![],
    }
}

/// The plan from `base` to `head`. `warnings` are the head's validation warnings.
pub fn plan(
    labels: &Labels,
    against: Against,
    base: &Snapshot,
    head: &Snapshot,
    warnings: Vec<Diagnostic>,
) -> Plan {
    let scope = match against {
        Against::Revision => Scope::Both,
        Against::Live => Scope::HeadKeys,
    };
    let wave_index = |wave: &Option<String>| {
        wave.as_ref()
            .and_then(|w| head.waves.iter().position(|h| h == w))
            .map_or(head.waves.len() + 1, |i| i + 1)
    };
    let names: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    let mut clusters = Vec::new();
    let mut unchanged = Vec::new();
    for name in names {
        let (b, h) = (base.clusters.get(name), head.clusters.get(name));
        let Some(wave) = h.or(b).map(|c| c.wave.clone()) else {
            continue;
        };
        let mut entry = ClusterPlan {
            name: name.clone(),
            wave_index: wave_index(&wave),
            wave,
            change: ClusterChange::Changed,
            creates: vec![],
            updates: vec![],
            deletes: vec![],
            gains: vec![],
            loses: vec![],
            unmanaged: vec![],
            error: None,
        };
        let empty = BTreeMap::new();
        match (b.map(|c| c.objects.as_ref()), h.map(|c| c.objects.as_ref())) {
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                entry.change = ClusterChange::Unreachable;
                entry.error = Some(e.clone());
            }
            (Some(Ok(b)), None) => {
                entry.change = ClusterChange::Removed;
                entry.unmanaged = b.keys().cloned().collect();
            }
            (b, Some(Ok(h))) => {
                if b.is_none() {
                    entry.change = ClusterChange::Added;
                }
                diff_objects(
                    b.unwrap_or(Ok(&empty)).unwrap_or(&empty),
                    h,
                    scope,
                    &mut entry,
                );
                if let Some(Ok(b)) = b {
                    (entry.gains, entry.loses) = claim_moves(b, h);
                }
                if b.is_some() && entry.is_empty() {
                    unchanged.push(name.clone());
                    continue;
                }
            }
            (None, None) => continue,
        }
        clusters.push(entry);
    }
    clusters.sort_by(|a, b| (a.wave_index, &a.name).cmp(&(b.wave_index, &b.name)));
    let summary = Summary {
        clusters: clusters.len() + unchanged.len(),
        changed: clusters.len(),
        unchanged: unchanged.len(),
        creates: clusters.iter().map(|c| c.creates.len()).sum(),
        updates: clusters.iter().map(|c| c.updates.len()).sum(),
        deletes: clusters.iter().map(|c| c.deletes.len()).sum(),
    };
    Plan {
        format: FORMAT,
        base: labels.base.clone(),
        head: labels.head.clone(),
        against,
        valid: true,
        errors: vec![],
        warnings,
        base_invalid: None,
        head_signature: None,
        summary,
        clusters,
        unchanged,
        rollout: vec![],
    }
}

impl ClusterPlan {
    fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty() && self.deletes.is_empty()
    }
}

/// The claims only one side carries. A cluster's labels decide which selector claims it
/// carries, so a relabelled cluster reads as what the relabelling does to it.
fn claim_moves(
    base: &BTreeMap<ObjectRef, Value>,
    head: &BTreeMap<ObjectRef, Value>,
) -> (Vec<ClaimMove>, Vec<ClaimMove>) {
    let (base, head) = (claims_in(base), claims_in(head));
    let only = |one: &BTreeMap<String, Vec<ObjectRef>>,
                other: &BTreeMap<String, Vec<ObjectRef>>| {
        one.iter()
            .filter(|(claim, _)| !other.contains_key(*claim))
            .map(|(claim, objects)| ClaimMove {
                claim: claim.clone(),
                objects: objects.clone(),
            })
            .collect()
    };
    (only(&head, &base), only(&base, &head))
}

/// Objects by the claim they were rendered from: their namespace and their claim label.
fn claims_in(objects: &BTreeMap<ObjectRef, Value>) -> BTreeMap<String, Vec<ObjectRef>> {
    let mut claims: BTreeMap<String, Vec<ObjectRef>> = BTreeMap::new();
    for (at, object) in objects {
        if let Some(name) = object["metadata"]["labels"][LABEL_PSQL].as_str() {
            claims
                .entry(format!("{}/{name}", at.namespace))
                .or_default()
                .push(at.clone());
        }
    }
    claims
}

fn diff_objects(
    base: &BTreeMap<ObjectRef, Value>,
    head: &BTreeMap<ObjectRef, Value>,
    scope: Scope,
    entry: &mut ClusterPlan,
) {
    for (at, want) in head {
        match base.get(at) {
            None => entry.creates.push(at.clone()),
            Some(have) => {
                let fields = fields::field_changes(have, want, scope);
                if !fields.is_empty() {
                    entry.updates.push(ObjectUpdate {
                        object: at.clone(),
                        fields,
                    });
                }
            }
        }
    }
    entry.deletes = base
        .keys()
        .filter(|at| !head.contains_key(*at))
        .cloned()
        .collect();
}

#[cfg(test)]
mod tests;
