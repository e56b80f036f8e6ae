//! Desired against live, object by object (SPEC 2.4). Only the fields psql-fleet sets are
//! compared, so what the API server or a controller adds (uid, status, managedFields,
//! defaults) never looks like drift, and a cluster in steady state yields no action.
//!
//! A live object that differs is either an update (the fleet changed since the last apply)
//! or drift (someone changed the object). The two are told apart by a hash of the desired
//! object that every apply writes as an annotation: the live hash equal to the desired one
//! means the fleet has not changed since, so the difference was made on the cluster. It
//! lives on the object, so the verdict survives an agent restart.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::fleet::DriftPolicy;
use crate::render::{DesiredObject, ObjectRef};

use super::compact_json::CompactJson;
use super::live::LiveObject;
use super::writers::{ManagerKind, Writer};

/// Annotation holding [`desired_hash`] of what psql-fleet last applied.
pub const ANNOTATION_DESIRED_HASH: &str = "fleet.hops.ops.com.ai/desired-hash";
/// Annotation naming the agent that last applied the object (host and process): two agents
/// share the field manager, so this is what tells them apart when they disagree.
pub const ANNOTATION_APPLIED_BY: &str = "fleet.hops.ops.com.ai/applied-by";

/// How a live object departs from the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Drift {
    /// Fields set by psql-fleet hold other values (their paths, as `spec.rollbackLimit`),
    /// and who wrote them last, when `managedFields` names another manager.
    Modified {
        fields: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<Writer>,
    },
    /// The object was seen on the cluster and is gone.
    Deleted,
}

impl Drift {
    pub fn describe(&self) -> String {
        match self {
            Drift::Modified { fields, by: None } => format!("modified: {}", fields.join(", ")),
            Drift::Modified {
                fields,
                by: Some(w),
            } => format!(
                "modified by {}{}: {}",
                w.manager,
                w.time
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                fields.join(", ")
            ),
            Drift::Deleted => "deleted".to_string(),
        }
    }

    /// Who made it, as the drift metric's bounded `manager` label.
    pub fn manager_kind(&self) -> ManagerKind {
        match self {
            Drift::Modified { by, .. } => ManagerKind::of(by.as_ref()),
            Drift::Deleted => ManagerKind::Unknown,
        }
    }
}

/// The verdict on one desired object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectDiff {
    InSync,
    /// Not on the cluster, and never seen there: created for the first time.
    Create,
    /// The fleet asks for something else than what was last applied.
    Update,
    Drift(Drift),
    /// Being deleted by the API server; nothing to do until it is gone.
    Terminating,
}

/// Why an object is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ApplyReason {
    Create,
    Update,
    CorrectDrift(Drift),
}

/// Why an object is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeleteReason {
    /// No claim of the fleet renders it any more.
    Prune,
}

/// One thing to do on a cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Apply {
        object: Box<ApplyBody>,
        reason: ApplyReason,
        /// Take the fields over from any other field manager ([`forces`]).
        force: bool,
    },
    ReportDrift {
        object: ObjectRef,
        drift: Drift,
    },
    Delete {
        object: ObjectRef,
        reason: DeleteReason,
    },
}

impl Action {
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            Action::Apply { object, .. } => object.at.clone(),
            Action::ReportDrift { object, .. } | Action::Delete { object, .. } => object.clone(),
        }
    }

    /// Whether the action writes to the cluster.
    pub fn writes(&self) -> bool {
        !matches!(self, Action::ReportDrift { .. })
    }
}

/// A desired object serialised once per pass: the JSON the live object is compared with,
/// and the hash of that JSON, which the apply records and drift detection reads back.
#[derive(Clone, Debug)]
pub struct Serialized {
    pub object: DesiredObject,
    pub json: Value,
    /// [`Serialized::hash`], once asked for.
    hash: OnceLock<String>,
}

impl Serialized {
    pub fn new(object: DesiredObject) -> Serialized {
        let json = object.to_json();
        Serialized {
            object,
            json,
            hash: OnceLock::new(),
        }
    }

    /// Hex SHA-256 of the canonical JSON, cut to 32 characters (enough to tell revisions
    /// apart, short enough to read in `kubectl get -o yaml`). Made when first asked for: a
    /// pass that finds the object in sync, as most passes do, never reads it, and encoding
    /// and hashing the object was two fifths of serialising it.
    pub fn hash(&self) -> &str {
        self.hash.get_or_init(|| hash_of(&self.json))
    }

    /// The server-side-apply body: the desired object plus its hash annotation.
    pub fn apply_body(&self) -> Value {
        self.apply_body_by(None)
    }

    /// [`Serialized::apply_body`], saying who applies it when known.
    pub fn apply_body_by(&self, applied_by: Option<&str>) -> Value {
        annotated(self.json.clone(), self.hash(), applied_by)
    }
}

/// `json` with the annotations an apply writes.
fn annotated(mut json: Value, hash: &str, applied_by: Option<&str>) -> Value {
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                ANNOTATION_DESIRED_HASH.to_string(),
                Value::String(hash.to_owned()),
            );
            if let Some(by) = applied_by {
                a.insert(ANNOTATION_APPLIED_BY.to_string(), Value::String(by.into()));
            }
        }
    }
    json
}

/// One object as its apply writes it, made when the plan decides to write: the body already
/// in the bytes sent. A cold start over thousands of clusters holds a plan per cluster while
/// the passes wait their turn to write, and each of these is about a kilobyte, where the
/// typed object with its JSON tree was several.
#[derive(Clone, Debug)]
pub struct ApplyBody {
    pub at: ObjectRef,
    /// The claim it is for (its `hops.ops.com.ai/psql` label), for the logs.
    pub claim: Option<String>,
    /// [`Serialized::hash`], which the apply records.
    pub hash: String,
    /// [`Serialized::apply_body_by`], encoded.
    pub json: Box<RawValue>,
}

impl PartialEq for ApplyBody {
    fn eq(&self, other: &ApplyBody) -> bool {
        self.at == other.at
            && self.claim == other.claim
            && self.hash == other.hash
            && self.json.get() == other.json.get()
    }
}

impl Serialized {
    /// What applying this object writes, saying who applies it when known.
    pub fn into_apply(self, applied_by: Option<&str>) -> ApplyBody {
        let claim = self
            .object
            .labels()
            .and_then(|l| l.get(crate::api::LABEL_PSQL))
            .cloned();
        let hash = self.hash().to_owned();
        // The JSON is taken, not copied: the object is done with once its apply is made.
        let body = annotated(self.json, &hash, applied_by);
        ApplyBody {
            at: self.object.object_ref(),
            claim,
            // A JSON value always encodes, and its encoding is valid raw JSON.
            json: serde_json::value::to_raw_value(&body)
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            hash,
        }
    }
}

/// [`Serialized::hash`] of one object, for a caller that needs only the hash.
pub fn desired_hash(object: &DesiredObject) -> String {
    hash_of(&object.to_json())
}

fn hash_of(json: &Value) -> String {
    let bytes = serde_json::to_vec(json).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// The verdict on one desired object. `seen_before`: the object was observed on the cluster
/// earlier, so its absence now is a deletion by hand rather than a first creation.
pub fn diff_object(
    desired: &Serialized,
    live: Option<&LiveObject>,
    seen_before: bool,
) -> ObjectDiff {
    let Some(live) = live else {
        return if seen_before {
            ObjectDiff::Drift(Drift::Deleted)
        } else {
            ObjectDiff::Create
        };
    };
    if live.terminating() {
        return ObjectDiff::Terminating;
    }
    let fields = differing_fields(&desired.json, live.json());
    if fields.is_empty() {
        return ObjectDiff::InSync;
    }
    match live.annotation(ANNOTATION_DESIRED_HASH) {
        Some(hash) if hash == desired.hash() => {
            let by = live.last_writer_of(&fields);
            ObjectDiff::Drift(Drift::Modified { fields, by })
        }
        _ => ObjectDiff::Update,
    }
}

/// Whether an apply for `reason` takes fields over from other field managers. Correcting
/// drift always does: another manager's edit moved the fields to it, and undoing that edit
/// is what the policy `correct` asks for. Creating or updating for a new revision does
/// only when the fleet says `force: true`; otherwise a conflict is reported, not overridden.
pub fn forces(reason: &ApplyReason, fleet_force: bool) -> bool {
    matches!(reason, ApplyReason::CorrectDrift(_)) || fleet_force
}

/// What the drift policy makes of a verdict; an apply says it is by `applied_by`, when
/// known.
pub fn action_for(
    object: Serialized,
    verdict: ObjectDiff,
    policy: DriftPolicy,
    fleet_force: bool,
    applied_by: Option<&str>,
) -> Option<Action> {
    let reason = match verdict {
        ObjectDiff::InSync | ObjectDiff::Terminating => return None,
        ObjectDiff::Create => ApplyReason::Create,
        ObjectDiff::Update => ApplyReason::Update,
        ObjectDiff::Drift(drift) => match policy {
            DriftPolicy::Correct => ApplyReason::CorrectDrift(drift),
            DriftPolicy::Report => {
                return Some(Action::ReportDrift {
                    object: object.object.object_ref(),
                    drift,
                })
            }
        },
    };
    Some(Action::Apply {
        force: forces(&reason, fleet_force),
        object: Box::new(object.into_apply(applied_by)),
        reason,
    })
}

/// Paths (dotted, `[i]` for list items) where `live` does not hold what `desired` sets.
/// Maps are compared key by key over the desired keys only; lists must match item by item
/// and in length, since psql-fleet owns its lists whole.
pub fn differing_fields(desired: &Value, live: &CompactJson) -> Vec<String> {
    let mut out = Vec::new();
    walk(desired, Some(live), &mut Vec::new(), &mut out);
    out.sort();
    out
}

/// One step from the root of the desired object down to a field.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The path a differing field is reported by: `a.b[0].c`. Written only for a field that
/// differs: building it for every field walked cost more than the comparisons, on every
/// pass over every object.
fn path_of(steps: &[Step<'_>]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Index(i) => {
                path.push('[');
                path.push_str(&i.to_string());
                path.push(']');
            }
        }
    }
    path
}

fn walk<'a>(
    desired: &'a Value,
    live: Option<&CompactJson>,
    steps: &mut Vec<Step<'a>>,
    out: &mut Vec<String>,
) {
    match (desired, live) {
        (Value::Object(want), Some(CompactJson::Object(have))) => {
            // Both maps iterate in key order: walked side by side, a key costs a comparison
            // or two, where a binary search in the live map took several, each a cache miss.
            let mut have = have.iter().peekable();
            for (key, value) in want {
                while have.next_if(|(k, _)| k.as_ref() < key.as_str()).is_some() {}
                let found = have.next_if(|(k, _)| k.as_ref() == key.as_str());
                steps.push(Step::Key(key));
                walk(value, found.map(|(_, v)| v), steps, out);
                steps.pop();
            }
        }
        (Value::Array(want), Some(CompactJson::Array(have))) if want.len() == have.len() => {
            for (i, (w, h)) in want.iter().zip(have.iter()).enumerate() {
                steps.push(Step::Index(i));
                walk(w, Some(h), steps, out);
                steps.pop();
            }
        }
        (Value::Number(want), Some(CompactJson::Number(have))) => {
            if want != have && want.as_f64() != have.as_f64() {
                out.push(path_of(steps));
            }
        }
        (want, Some(have)) if have.same_as(want) => {}
        _ => out.push(path_of(steps)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::live::fixtures::{live, served, state};
    use crate::reconcile::tests::{claim, rendered};

    fn applied(object: &DesiredObject, ready: Option<bool>) -> LiveObject {
        served(Serialized::new(object.clone()).apply_body(), ready)
    }

    #[test]
    fn an_object_as_the_server_returns_it_is_in_sync() {
        let objects = rendered(&claim("a", "c1"), true);
        for object in &objects {
            assert_eq!(
                diff_object(
                    &Serialized::new(object.clone()),
                    Some(&applied(object, Some(true))),
                    true
                ),
                ObjectDiff::InSync
            );
        }
    }

    /// Encoding and hashing the object is for an apply and for telling drift from an
    /// update; an object found in sync needs neither.
    #[test]
    fn an_object_found_in_sync_is_not_hashed() {
        let object = rendered(&claim("a", "c1"), true).remove(0);
        let desired = Serialized::new(object.clone());
        let live = applied(&object, Some(true));
        assert_eq!(diff_object(&desired, Some(&live), true), ObjectDiff::InSync);
        assert_eq!(desired.hash.get(), None);
        // Telling an edit from an update reads it.
        let mut edited = live;
        edited.edit(|j| j["spec"]["rollbackLimit"] = json!(7));
        let verdict = diff_object(&desired, Some(&edited), true);
        assert!(matches!(verdict, ObjectDiff::Drift(Drift::Modified { .. })));
        assert_eq!(desired.hash.get(), Some(&desired_hash(&object)));
    }

    #[test]
    fn steady_state_yields_no_action_under_either_policy() {
        let objects = rendered(&claim("a", "c1"), true);
        let live = state(objects.iter().map(|o| applied(o, Some(true))));
        for policy in [DriftPolicy::Correct, DriftPolicy::Report] {
            for object in &objects {
                let object = Serialized::new(object.clone());
                let verdict = diff_object(&object, live.get(&object.object.object_ref()), true);
                assert_eq!(
                    action_for(object.clone(), verdict, policy, false, None),
                    None
                );
            }
        }
    }

    #[test]
    fn a_drift_names_the_manager_that_now_owns_the_field_and_when() {
        let objects = rendered(&claim("a", "c1"), false);
        let sg = Serialized::new(objects[0].clone());
        let mut json = applied(&objects[0], Some(true)).into_json();
        json["spec"]["rollbackLimit"] = json!(7);
        json["metadata"]["managedFields"] = json!([
            {"manager": "psql-fleet", "operation": "Apply", "time": "2026-12-03T10:00:00Z",
             "fieldsV1": {"f:spec": {"f:forProvider": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-12-03T11:00:00Z",
             "fieldsV1": {"f:spec": {"f:rollbackLimit": {}}}}
        ]);
        let edited = LiveObject::from_json(json).unwrap();
        assert!(
            edited.json().pointer("/metadata/managedFields").is_none(),
            "managedFields is not kept"
        );
        let ObjectDiff::Drift(drift) = diff_object(&sg, Some(&edited), true) else {
            panic!("no drift");
        };
        assert_eq!(
            drift.describe(),
            "modified by kubectl-edit at 2026-12-03T11:00:00Z: spec.rollbackLimit"
        );
        assert_eq!(drift.manager_kind(), ManagerKind::Kubectl);
        assert_eq!(Drift::Deleted.manager_kind(), ManagerKind::Unknown);
    }

    #[test]
    fn verdicts_tell_creation_update_drift_and_deletion_apart() {
        let objects = rendered(&claim("a", "c1"), false);
        let sg = &objects[0];
        let mut edited = applied(sg, Some(true));
        edited.edit(|j| {
            j["spec"]["rollbackLimit"] = json!(7);
            j["metadata"]["labels"]["extra"] = json!("added by someone");
        });
        let mut stale_hash = edited.clone();
        stale_hash.edit(|j| j["metadata"]["annotations"][ANNOTATION_DESIRED_HASH] = json!("old"));
        let mut terminating = applied(sg, None);
        terminating.edit(|j| j["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z"));
        let cases = [
            ("never seen and absent", None, false, ObjectDiff::Create),
            (
                "seen and now absent",
                None,
                true,
                ObjectDiff::Drift(Drift::Deleted),
            ),
            (
                "edited by hand",
                Some(edited),
                true,
                ObjectDiff::Drift(Drift::Modified {
                    fields: vec!["spec.rollbackLimit".into()],
                    by: None,
                }),
            ),
            (
                "applied from an older revision",
                Some(stale_hash),
                true,
                ObjectDiff::Update,
            ),
            (
                "created by hand without our annotation",
                Some(live(sg.to_json())),
                false,
                ObjectDiff::InSync,
            ),
            (
                "being deleted",
                Some(terminating),
                true,
                ObjectDiff::Terminating,
            ),
        ];
        for (name, live_object, seen, want) in cases {
            let sg = Serialized::new(sg.clone());
            assert_eq!(diff_object(&sg, live_object.as_ref(), seen), want, "{name}");
        }
    }

    #[test]
    fn drift_is_corrected_or_only_reported_according_to_the_policy() {
        let sg = Serialized::new(rendered(&claim("a", "c1"), false).remove(0));
        let drift = ObjectDiff::Drift(Drift::Deleted);
        assert_eq!(
            action_for(sg.clone(), drift.clone(), DriftPolicy::Correct, false, None),
            Some(Action::Apply {
                object: Box::new(sg.clone().into_apply(None)),
                reason: ApplyReason::CorrectDrift(Drift::Deleted),
                force: true,
            })
        );
        assert_eq!(
            action_for(sg.clone(), drift, DriftPolicy::Report, true, None),
            Some(Action::ReportDrift {
                object: sg.object.object_ref(),
                drift: Drift::Deleted
            })
        );
    }

    #[test]
    fn only_drift_correction_or_the_fleets_force_setting_takes_fields_over() {
        let sg = Serialized::new(rendered(&claim("a", "c1"), false).remove(0));
        let modified = Drift::Modified {
            fields: vec!["spec.rollbackLimit".into()],
            by: None,
        };
        let cases = [
            ("create", ObjectDiff::Create, false, false),
            ("create, fleet force", ObjectDiff::Create, true, true),
            ("update", ObjectDiff::Update, false, false),
            ("update, fleet force", ObjectDiff::Update, true, true),
            ("correct an edit", ObjectDiff::Drift(modified), false, true),
            (
                "recreate a deleted object",
                ObjectDiff::Drift(Drift::Deleted),
                false,
                true,
            ),
        ];
        for (name, verdict, fleet_force, want) in cases {
            match action_for(sg.clone(), verdict, DriftPolicy::Correct, fleet_force, None) {
                Some(Action::Apply { force, .. }) => assert_eq!(force, want, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn lists_and_nested_values_are_compared_by_path() {
        let want = json!({"spec": {"managementPolicies": ["*"], "forProvider": {"values": {"a": {"b": true}}}}});
        let have = json!({"spec": {"managementPolicies": ["Observe", "Create"], "forProvider": {"values": {"a": {"b": false, "c": 1}}}}});
        assert_eq!(
            differing_fields(&want, &have.into()),
            vec!["spec.forProvider.values.a.b", "spec.managementPolicies"]
        );
        assert!(differing_fields(&json!({"n": 3}), &json!({"n": 3.0}).into()).is_empty());
        // Lists as long as wanted are compared item by item, each item by its index.
        let want = json!({"a": [{"b": 1, "c": [true, "x"]}, {"b": 2}], "d": "same"});
        let have = json!({"a": [{"b": 1, "c": [true, "y"]}, {"b": 3}], "d": "same"});
        assert_eq!(
            differing_fields(&want, &have.into()),
            vec!["a[0].c[1]", "a[1].b"]
        );
        // Keys only the live map has, before, between and after the wanted ones, are
        // stepped over; a wanted key the live map lacks differs.
        let want = json!({"b": 1, "d": {"x": 1}, "f": 2, "h": 0});
        let have = json!({"a": 0, "b": 1, "c": 0, "d": {"w": 0, "x": 2, "y": 0}, "e": 0, "g": 0, "h": 0, "i": 0});
        assert_eq!(differing_fields(&want, &have.into()), vec!["d.x", "f"]);
    }

    #[test]
    fn an_apply_is_planned_with_its_body_encoded_and_its_claim_named() {
        let sg = Serialized::new(rendered(&claim("a", "c1"), false).remove(0));
        let by = "psql-fleet on host-a";
        let Some(Action::Apply { object, .. }) = action_for(
            sg.clone(),
            ObjectDiff::Create,
            DriftPolicy::Correct,
            false,
            Some(by),
        ) else {
            panic!("no apply");
        };
        let body: Value = serde_json::from_str(object.json.get()).unwrap();
        assert_eq!(body, sg.apply_body_by(Some(by)));
        assert_eq!(
            body["metadata"]["annotations"][ANNOTATION_APPLIED_BY],
            json!(by)
        );
        assert_eq!(object.hash, sg.hash());
        assert_eq!(object.at, sg.object.object_ref());
        assert_eq!(object.claim.as_deref(), Some("a"));
    }

    #[test]
    fn the_apply_body_carries_the_hash_of_the_desired_object() {
        let sg = rendered(&claim("a", "c1"), false).remove(0);
        let body = Serialized::new(sg.clone()).apply_body();
        assert_eq!(
            body["metadata"]["annotations"][ANNOTATION_DESIRED_HASH],
            json!(desired_hash(&sg))
        );
        assert_eq!(desired_hash(&sg).len(), 32);
    }
}
