//! Events the simulated controllers record about the objects they reconcile, shaped like
//! client-go's EventRecorder writes them (core/v1, name `<object>.<hex nanoseconds>`,
//! `source.component` = the controller), so `kubectl describe` shows an Events section.
//! A real API server stores one Event and serves it as core/v1 and events.k8s.io/v1; the
//! simulator keeps the two kinds in separate stores, so the events.k8s.io/v1 form of the
//! same Event is written beside it.

use serde_json::{json, Value};

use super::cluster::{ClusterState, Shared};
use super::objects::{self, meta_str};
use super::verbs::{self, Target, Validation, WriteOpts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// What an event is about and what it says.
pub struct Note<'a> {
    pub type_: Type,
    pub reason: &'a str,
    pub message: &'a str,
    /// The recorder's name, e.g. `managed/release.helm.m.crossplane.io`.
    pub component: &'a str,
}

/// The core/v1 Event client-go's recorder would create for `object`.
pub fn core_event(object: &Value, note: &Note<'_>, now: &str, nanos: u128) -> Value {
    let name = meta_str(object, "name").unwrap_or_default();
    // Events about cluster-scoped objects go to "default", as client-go's recorder does.
    let namespace = meta_str(object, "namespace").unwrap_or("default");
    let mut involved = json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "name": name,
        "uid": meta_str(object, "uid").unwrap_or_default(),
        "resourceVersion": meta_str(object, "resourceVersion").unwrap_or_default(),
    });
    if let Some(ns) = meta_str(object, "namespace") {
        involved["namespace"] = Value::String(ns.into());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": namespace},
        "involvedObject": involved,
        "reason": note.reason,
        "message": note.message,
        "source": {"component": note.component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": note.type_.as_str(),
        "eventTime": null,
        "reportingComponent": note.component,
        "reportingInstance": "",
    })
}

/// The events.k8s.io/v1 form of a core/v1 Event, as the API server converts it.
pub fn events_v1(core: &Value) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": core["metadata"],
        "regarding": core["involvedObject"],
        "reason": core["reason"],
        "note": core["message"],
        "type": core["type"],
        "eventTime": core["eventTime"],
        "reportingController": core["reportingComponent"],
        "reportingInstance": core["reportingInstance"],
        "deprecatedSource": core["source"],
        "deprecatedFirstTimestamp": core["firstTimestamp"],
        "deprecatedLastTimestamp": core["lastTimestamp"],
        "deprecatedCount": core["count"],
    })
}

/// Records an event about `object`; a failure only loses the event, as with client-go.
pub fn record(sh: &Shared, cl: &ClusterState, object: &Value, note: &Note<'_>) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let core = core_event(object, note, &objects::now(), nanos);
    let opts = WriteOpts {
        dry_run: false,
        manager: note.component.into(),
        validation: Validation::Ignore,
        force: false,
    };
    for (group, body) in [("", core.clone()), ("events.k8s.io", events_v1(&core))] {
        let Some(res) = sh.find(group, "v1", "events") else {
            continue;
        };
        let t = Target {
            res,
            namespace: meta_str(&body, "namespace"),
            name: meta_str(&body, "name").unwrap_or_default(),
            subresource: None,
        };
        if let Err(e) = verbs::create(sh, cl, &t, body.clone(), &opts) {
            tracing::debug!(cluster = %cl.name, reason = %e.reason, "simulated event not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_and_converts_to_events_v1() {
        let obj = json!({"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u1", "resourceVersion": "7"}});
        let note = Note {
            type_: Type::Warning,
            reason: "CannotCreateExternalResource",
            message: "create failed: x",
            component: "managed/release.helm.m.crossplane.io",
        };
        let e = core_event(&obj, &note, "2026-01-01T00:00:00Z", 255);
        assert_eq!(e["metadata"]["name"], "r.ff");
        assert_eq!(e["metadata"]["namespace"], "ns");
        assert_eq!(e["involvedObject"]["uid"], "u1");
        assert_eq!(e["involvedObject"]["kind"], "Release");
        assert_eq!(e["type"], "Warning");
        let v1 = events_v1(&e);
        assert_eq!(v1["regarding"], e["involvedObject"]);
        assert_eq!(v1["note"], "create failed: x");
        assert_eq!(
            v1["reportingController"],
            "managed/release.helm.m.crossplane.io"
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
        let e = core_event(&ns, &note, "t", 1);
        assert_eq!(e["metadata"]["namespace"], "default");
        assert!(e["involvedObject"].get("namespace").is_none());
    }
}
