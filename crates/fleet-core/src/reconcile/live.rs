//! What a cluster holds, as plain data: the objects carrying this fleet's inventory label,
//! as the API server served them. The cluster workers fill it from their watches; the
//! decisions read it without knowing where it came from.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::compact_json::CompactJson;
use super::writers::{
    field_writer, is_other_writer, last_writer_of, other_writers, FieldWriter, Writer,
};
use crate::api::condition::Condition;
use crate::api::release::{NotReadyCause, Readiness, ReleaseStatus};
use crate::api::{LABEL_FLEET, LABEL_PSQL};
use crate::model::Chart;
use crate::render::{ObjectKind, ObjectRef};

/// One live object, whole, as JSON, with what the decisions read of it taken out once.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveObject {
    pub object_ref: ObjectRef,
    json: CompactJson,
    /// A Release's readiness, read from its status once, when the object arrives (every
    /// pass, the metrics, the status and both gates read it, never the JSON again); `None`
    /// for a Usage.
    readiness: Option<Readiness>,
    /// The other field managers of the object, read from `metadata.managedFields`, which
    /// is not kept: it is most of a served object, and a live view holds every object of
    /// every cluster.
    writers: Vec<FieldWriter>,
}

/// The live objects of one cluster, by where they live. A claim makes three objects, so a
/// cluster holds a handful: they are kept in a vector sorted by place, which costs their
/// own size, where a B-tree's first node has room for eleven places and eleven objects
/// (about 2 KiB a cluster, ten thousand times over).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    objects: Vec<LiveObject>,
}

impl LiveState {
    pub fn new() -> LiveState {
        LiveState::default()
    }

    fn find(&self, at: &ObjectRef) -> Result<usize, usize> {
        self.objects.binary_search_by(|o| o.object_ref.cmp(at))
    }

    pub fn get(&self, at: &ObjectRef) -> Option<&LiveObject> {
        self.find(at).ok().map(|i| &self.objects[i])
    }

    pub fn get_mut(&mut self, at: &ObjectRef) -> Option<&mut LiveObject> {
        self.find(at).ok().map(|i| &mut self.objects[i])
    }

    pub fn contains_key(&self, at: &ObjectRef) -> bool {
        self.find(at).is_ok()
    }

    /// Holds `object` at its place, returning what was there.
    pub fn insert(&mut self, object: LiveObject) -> Option<LiveObject> {
        match self.find(&object.object_ref) {
            Ok(i) => Some(std::mem::replace(&mut self.objects[i], object)),
            Err(i) => {
                self.objects.insert(i, object);
                None
            }
        }
    }

    pub fn remove(&mut self, at: &ObjectRef) -> Option<LiveObject> {
        self.find(at).ok().map(|i| self.objects.remove(i))
    }

    pub fn retain(&mut self, keep: impl FnMut(&LiveObject) -> bool) {
        self.objects.retain(keep);
    }

    /// In the order of their places.
    pub fn values(&self) -> std::slice::Iter<'_, LiveObject> {
        self.objects.iter()
    }

    /// For edits that keep each object where it is (its `object_ref` unchanged).
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, LiveObject> {
        self.objects.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

impl Extend<LiveObject> for LiveState {
    fn extend<I: IntoIterator<Item = LiveObject>>(&mut self, objects: I) {
        for object in objects {
            self.insert(object);
        }
    }
}

impl FromIterator<LiveObject> for LiveState {
    fn from_iter<I: IntoIterator<Item = LiveObject>>(objects: I) -> LiveState {
        let mut state = LiveState::new();
        state.extend(objects);
        state
    }
}

impl IntoIterator for LiveState {
    type Item = LiveObject;
    type IntoIter = std::vec::IntoIter<LiveObject>;

    fn into_iter(self) -> Self::IntoIter {
        self.objects.into_iter()
    }
}

impl LiveObject {
    /// Reads kind, name and namespace from the object itself; `None` for other kinds.
    /// `metadata.managedFields` is read for the other writers, then dropped.
    pub fn from_json(mut json: Value) -> Option<LiveObject> {
        let writers = json
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|meta| meta.remove("managedFields"))
            .map(|managed| other_writers(&managed))
            .unwrap_or_default();
        LiveObject::from_parts(json.into(), writers)
    }

    /// The object `json` (without its managed fields), whose other writers are `writers`.
    fn from_parts(json: CompactJson, writers: Vec<FieldWriter>) -> Option<LiveObject> {
        let kind = match json.get("kind").and_then(CompactJson::as_str)? {
            k if k == ObjectKind::Release.as_str() => ObjectKind::Release,
            k if k == ObjectKind::Usage.as_str() => ObjectKind::Usage,
            _ => return None,
        };
        let meta = json.get("metadata")?;
        let name = meta.get("name").and_then(CompactJson::as_str)?.to_string();
        let namespace = meta
            .get("namespace")
            .and_then(CompactJson::as_str)
            .unwrap_or_default()
            .to_string();
        let readiness = (kind == ObjectKind::Release).then(|| release_readiness(&json));
        Some(LiveObject {
            object_ref: ObjectRef {
                kind,
                name,
                namespace,
            },
            json,
            readiness,
            writers,
        })
    }

    /// The object without its status, once its readiness is read: nothing the agent
    /// decides reads the status again (a diff or a plan walks the desired fields, which
    /// have none; a watch event is told from the one held by its version), and a Release's
    /// conditions and `atProvider` are a third of what a live view would hold.
    pub fn without_status(mut self) -> LiveObject {
        if let CompactJson::Object(entries) = &mut self.json {
            let mut kept = std::mem::take(entries).into_vec();
            kept.retain(|(key, _)| &**key != "status");
            *entries = kept.into_boxed_slice();
        }
        self
    }

    pub fn json(&self) -> &CompactJson {
        &self.json
    }

    pub fn into_json(self) -> Value {
        Value::from(&self.json)
    }

    /// Changes the object in place, and what is read of it with it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        let mut json = Value::from(&self.json);
        f(&mut json);
        self.json = json.into();
        if self.object_ref.kind == ObjectKind::Release {
            self.readiness = Some(release_readiness(&self.json));
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.json
            .pointer("/metadata/labels")
            .and_then(|l| l.get(key))
            .and_then(CompactJson::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.json
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(CompactJson::as_str)
    }

    /// The fleet whose inventory label the object carries.
    pub fn fleet(&self) -> Option<&str> {
        self.label(LABEL_FLEET)
    }

    /// The claim name the object was rendered from (SPEC 1.2 label).
    pub fn claim_name(&self) -> Option<&str> {
        self.label(LABEL_PSQL)
    }

    /// The version the server gave this state of the object (`metadata.resourceVersion`).
    pub fn resource_version(&self) -> Option<&str> {
        self.json
            .pointer("/metadata/resourceVersion")
            .and_then(CompactJson::as_str)
    }

    /// Being deleted: the API server set `deletionTimestamp` and finalizers still hold it.
    pub fn terminating(&self) -> bool {
        self.json
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
    }

    /// Of the other field managers, the one that wrote last among those owning any of
    /// `fields`: who made a drift.
    pub fn last_writer_of(&self, fields: &[String]) -> Option<Writer> {
        last_writer_of(&self.writers, fields)
    }

    /// A Release's readiness (SPEC 1.6); `None` for a Usage.
    pub fn release_readiness(&self) -> Option<&Readiness> {
        self.readiness.as_ref()
    }

    /// Which chart a Release installs; names are configurable, the chart is not.
    pub fn chart(&self) -> Option<Chart> {
        self.json
            .pointer("/spec/forProvider/chart/name")
            .and_then(CompactJson::as_str)
            .and_then(Chart::from_name)
    }

    /// Name of the Release a Usage protects (`spec.of`).
    pub fn usage_of(&self) -> Option<&str> {
        self.json
            .pointer("/spec/of/resourceRef/name")
            .and_then(CompactJson::as_str)
    }

    /// Name of the Release that must go first (`spec.by`).
    pub fn usage_by(&self) -> Option<&str> {
        self.json
            .pointer("/spec/by/resourceRef/name")
            .and_then(CompactJson::as_str)
    }
}

/// A served object decoded from the server's text in one pass, on its way into the live
/// view: no `Value` tree, and of the managed fields only the other writers' field sets are
/// read; this agent's own (a Release's every value) and the status writers' are skipped
/// over as text. The status is read for a Release's readiness, then not kept.
pub struct ServedObject {
    entries: Vec<(Box<str>, CompactJson)>,
    writers: Vec<FieldWriter>,
}

impl ServedObject {
    /// The live object, of the `kind` it was asked for as (a list's items need not name
    /// their kind); `None` without a name.
    pub fn into_live(mut self, kind: ObjectKind) -> Option<LiveObject> {
        // Last, so they stand over what the text said (a key given twice keeps its last).
        self.entries
            .push(("kind".into(), CompactJson::String(kind.as_str().into())));
        self.entries.push((
            "apiVersion".into(),
            CompactJson::String(kind.api_version().into()),
        ));
        let live = LiveObject::from_parts(CompactJson::object(self.entries), self.writers)?;
        Some(live.without_status())
    }
}

impl<'de> Deserialize<'de> for ServedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ServedObject, D::Error> {
        Level::Object.deserialize(deserializer)
    }
}

/// Where in a served object a map is read: at its top, `metadata` is read as
/// [`Level::Metadata`]; there, `managedFields` names the other writers and is not kept.
#[derive(Clone, Copy)]
enum Level {
    Object,
    Metadata,
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = ServedObject;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ServedObject, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = ServedObject;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Level::Object => "a Kubernetes object",
            Level::Metadata => "an object's metadata",
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServedObject, A::Error> {
        let mut entries: Vec<(Box<str>, CompactJson)> = Vec::new();
        let mut writers = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match (self, key.as_str()) {
                (Level::Object, "metadata") => {
                    let meta = map.next_value_seed(Level::Metadata)?;
                    writers = meta.writers;
                    CompactJson::object(meta.entries)
                }
                (Level::Metadata, "managedFields") => {
                    let managed: Option<Vec<ManagedEntry>> = map.next_value()?;
                    writers = other_writers_of(managed.unwrap_or_default());
                    continue;
                }
                _ => map.next_value()?,
            };
            entries.push((key.into_boxed_str(), value));
        }
        Ok(ServedObject { entries, writers })
    }
}

/// One entry of `metadata.managedFields`, its field set left as text until it is known
/// to be another writer's.
#[derive(Deserialize)]
struct ManagedEntry {
    manager: Option<String>,
    subresource: Option<String>,
    time: Option<String>,
    #[serde(rename = "fieldsV1")]
    fields: Option<Box<RawValue>>,
}

/// [`other_writers`] of these entries, parsing only their field sets, and only the other
/// writers'.
fn other_writers_of(entries: Vec<ManagedEntry>) -> Vec<FieldWriter> {
    entries
        .iter()
        .filter_map(|e| {
            let manager = e.manager.as_deref()?;
            let subresource = e.subresource.as_deref();
            if !is_other_writer(manager, subresource) {
                return None;
            }
            let set = e
                .fields
                .as_ref()
                .and_then(|raw| serde_json::from_str::<Map<String, Value>>(raw.get()).ok());
            field_writer(manager, subresource, e.time.as_deref(), set.as_ref())
        })
        .collect()
}

/// Readiness of a Release from its `status.conditions` (SPEC 1.6); conditions that do not
/// parse count as not ready. Only the conditions are decoded: the rest of the status (the
/// release's description and chart facts) was copied and decoded on every event a Release
/// brought, for nothing. `Ready=True` counts only when Crossplane stamped it with the
/// object's current `metadata.generation` (or did not stamp it at all): one left over from
/// before an update (a forced takeover, an upgrade) is not the new spec's readiness.
fn release_readiness(json: &CompactJson) -> Readiness {
    let conditions = json
        .pointer("/status/conditions")
        .and_then(|c| Vec::<Condition>::deserialize(Value::from(c)).ok());
    let readiness = ReleaseStatus::readiness(conditions.as_deref());
    let generation = json
        .pointer("/metadata/generation")
        .and_then(CompactJson::as_i64);
    let observed = crate::api::condition::find(conditions.as_deref(), "Ready")
        .and_then(|c| c.observed_generation);
    match (readiness, generation, observed) {
        (Readiness::Ready, Some(g), Some(o)) if o < g => Readiness::NotReady {
            cause: NotReadyCause::ReadyUnknown,
            reason: format!("Ready=True is for generation {o}; generation {g} not yet observed"),
        },
        (readiness, ..) => readiness,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Live objects for tests, shaped as an API server returns them.

    use serde_json::json;

    use super::*;

    pub fn live(json: Value) -> LiveObject {
        LiveObject::from_json(json).unwrap()
    }

    pub fn state(objects: impl IntoIterator<Item = LiveObject>) -> LiveState {
        objects.into_iter().collect()
    }

    /// Adds what an API server adds: uid, resourceVersion, managedFields, status.
    pub fn served(mut desired: Value, ready: Option<bool>) -> LiveObject {
        let meta = desired["metadata"].as_object_mut().unwrap();
        meta.insert("uid".into(), json!("0f6c1d3e"));
        meta.insert("resourceVersion".into(), json!("42"));
        meta.insert("generation".into(), json!(1));
        meta.insert(
            "managedFields".into(),
            json!([{"manager": "psql-fleet", "operation": "Apply"}]),
        );
        if let Some(ready) = ready {
            desired["status"] = json!({"conditions": [
                {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": if ready {"True"} else {"False"}, "reason": if ready {"Available"} else {"Creating"}, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]});
        }
        live(desired)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_ready_condition_counts_for_the_generation_it_was_stamped_with() {
        let mut r = served(
            json!({"kind": "Release", "metadata": {"name": "x", "namespace": "d"}}),
            Some(true),
        );
        assert!(
            r.release_readiness().unwrap().is_ready(),
            "no stamp: current"
        );
        r.edit(|j| {
            j["metadata"]["generation"] = json!(3);
            j["status"]["conditions"][1]["observedGeneration"] = json!(2);
        });
        assert!(!r.release_readiness().unwrap().is_ready());
        r.edit(|j| j["status"]["conditions"][1]["observedGeneration"] = json!(3));
        assert!(r.release_readiness().unwrap().is_ready());
    }

    #[test]
    fn a_release_without_status_is_not_ready_and_says_why() {
        let r = live(json!({"kind": "Release", "metadata": {"name": "a", "namespace": "default"}}));
        assert!(!r.release_readiness().unwrap().is_ready());
    }

    #[test]
    fn readiness_reads_the_conditions_and_a_malformed_condition_is_not_ready() {
        let release = |status: serde_json::Value| {
            live(json!({"kind": "Release", "metadata": {"name": "a", "namespace": "default"}, "status": status}))
                .release_readiness()
                .unwrap()
                .clone()
        };
        let ready = json!({"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let facts =
            json!({"state": "deployed", "revision": 1, "releaseDescription": "Install complete"});
        assert!(release(json!({"atProvider": facts, "conditions": [ready]})).is_ready());
        let unparsed = release(json!({"conditions": [{"type": "Ready", "status": "True"}]}));
        assert!(!unparsed.is_ready(), "a condition without its reason");
        assert!(
            format!("{unparsed:?}").contains("no Ready condition"),
            "{unparsed:?}"
        );
        assert!(!release(json!({"conditions": null})).is_ready());
    }

    #[test]
    fn ready_true_of_an_older_generation_is_not_ready() {
        let release = |generation: i64, observed: i64| {
            live(
                json!({"kind": "Release", "metadata": {"name": "a", "namespace": "default", "generation": generation},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available", "observedGeneration": observed, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
            )
        };
        assert!(release(2, 2).release_readiness().unwrap().is_ready());
        let stale = release(3, 2).release_readiness().unwrap().clone();
        assert!(!stale.is_ready());
        assert!(
            format!("{stale:?}").contains("generation 3 not yet observed"),
            "{stale:?}"
        );
    }

    #[test]
    fn objects_of_other_kinds_are_not_live_objects() {
        assert!(
            LiveObject::from_json(json!({"kind": "ConfigMap", "metadata": {"name": "a"}}))
                .is_none()
        );
    }

    #[test]
    fn a_deletion_timestamp_marks_the_object_terminating() {
        let r = live(
            json!({"kind": "Usage", "metadata": {"name": "a", "namespace": "n", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        assert!(r.terminating());
        assert_eq!(r.release_readiness(), None, "a Usage has no readiness");
    }

    #[test]
    fn an_object_decoded_from_its_text_is_the_one_read_from_json() {
        let release = json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
            "metadata": {
                "name": "stackgres", "namespace": "default", "resourceVersion": "7",
                "generation": 2, "labels": {"b": "2", "a": "1"},
                "managedFields": [
                    {"manager": "psql-fleet", "operation": "Apply", "time": "2026-12-03T10:00:00Z",
                     "fieldsV1": {"f:spec": {"f:forProvider": {"f:values": {"f:a": {}}}}}},
                    {"manager": "kubectl-edit", "operation": "Update", "time": "2026-12-03T11:00:00Z",
                     "fieldsV1": {"f:spec": {"f:rollbackLimit": {}}}},
                    {"manager": "provider-helm", "operation": "Update", "subresource": "status",
                     "fieldsV1": {"f:status": {"f:conditions": {}}}},
                    {"operation": "Update", "fieldsV1": {"f:spec": {}}}
                ]
            },
            "spec": {"rollbackLimit": 7, "forProvider": {"values": {"a": [1, 2.5, null]}}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                       "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        let release_text = serde_json::to_string(&release).unwrap();
        let objects = [
            (ObjectKind::Release, release),
            (
                ObjectKind::Usage,
                json!({"metadata": {"name": "u", "namespace": "n", "managedFields": null}}),
            ),
            (
                ObjectKind::Usage,
                json!({"kind": "Usage", "metadata": {"namespace": "n"}}),
            ),
            (
                ObjectKind::Release,
                json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}}),
            ),
        ];
        for (kind, mut json) in objects {
            let text = serde_json::to_string(&json).unwrap();
            let decoded = serde_json::from_str::<ServedObject>(&text)
                .unwrap()
                .into_live(kind);
            json["kind"] = json!(kind.as_str());
            json["apiVersion"] = json!(kind.api_version());
            let read = LiveObject::from_json(json).map(LiveObject::without_status);
            assert_eq!(decoded, read, "{text}");
        }
        let decoded = serde_json::from_str::<ServedObject>(&release_text)
            .unwrap()
            .into_live(ObjectKind::Release)
            .unwrap();
        let by = decoded
            .last_writer_of(&["spec.rollbackLimit".into()])
            .unwrap();
        assert_eq!(by.manager, "kubectl-edit");
        assert!(
            decoded.json().pointer("/metadata/managedFields").is_none(),
            "managedFields is not kept"
        );
        // Its readiness is read from the status, which is then not kept: Ready=True
        // stamped for generation 1 is not the readiness of generation 2.
        assert!(
            decoded.json().get("status").is_none(),
            "the status is not kept"
        );
        assert!(matches!(
            decoded.release_readiness(),
            Some(Readiness::NotReady {
                cause: NotReadyCause::ReadyUnknown,
                ..
            })
        ));
    }
}
