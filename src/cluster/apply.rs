//! Writes to one cluster: server-side apply with field manager `psql-fleet`, deletes, and
//! `events.k8s.io/v1` Events. Every call has a timeout; errors are typed so that the worker
//! counts them by a fixed reason, and say what failed down to its cause (the server's
//! answer, or why it could not be reached), through [`crate::error_chain`].

use std::time::Duration;

use either::Either;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::core::Status;
use kube::Resource;

use super::client::ClusterClient;

use crate::error_chain;
use crate::metrics::ErrorReason;
use fleet_core::api::{Release, Usage};
use fleet_core::reconcile::diff::ApplyBody;
use fleet_core::reconcile::writers::is_other_writer;
use fleet_core::reconcile::LiveObject;
use fleet_core::reconcile::ServedObject;
use fleet_core::render::{ObjectKind, ObjectRef};

/// Field manager of every apply (SPEC 2.2).
pub use fleet_core::reconcile::writers::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster {cluster}: {object}: conflict with another field manager ({message})")]
    Conflict {
        cluster: String,
        object: String,
        message: String,
    },
    #[error("cluster {cluster}: {object}: API server answered {}{}", error_chain::code_and_reason(*.code, .reason), said(.message))]
    Api {
        cluster: String,
        object: String,
        code: u16,
        reason: String,
        /// The Status message, such as `namespaces "payments" not found`, as far as it
        /// may be quoted ([`error_chain::server_message`]).
        message: String,
    },
    #[error("cluster {cluster}: {object}: no answer within {seconds}s")]
    Timeout {
        cluster: String,
        object: String,
        seconds: u64,
    },
    #[error("cluster {cluster}: {object}: cannot reach the API server: {cause}")]
    Unreachable {
        cluster: String,
        object: String,
        /// Why, down to the innermost cause (a TLS or connection error), redacted.
        cause: String,
    },
    /// Leader election: the renew deadline of the Lease that lets this replica write here
    /// (the leader's, or under `--shards` the cluster's shard's) has passed, so it may not
    /// write (its workers are being stopped).
    #[error(
        "cluster {cluster}: {object}: not written: this replica does not hold the Lease that lets it write here (the leader's, or its shard's)"
    )]
    Fenced { cluster: String, object: String },
}

impl Error {
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::Conflict { .. } => ErrorReason::Conflict,
            Error::Api {
                code: 401 | 403, ..
            } => ErrorReason::Forbidden,
            Error::Api {
                code: 400 | 422, ..
            } => ErrorReason::Invalid,
            Error::Api { .. } => ErrorReason::ApiError,
            Error::Timeout { .. } => ErrorReason::Timeout,
            Error::Unreachable { .. } => ErrorReason::Unreachable,
            // Only ever counted in the moment between the fence closing and the workers
            // ending, whose series are then forgotten with the cluster's.
            Error::Fenced { .. } => ErrorReason::ApiError,
        }
    }
}

fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

pub fn resource(kind: ObjectKind) -> ApiResource {
    match kind {
        ObjectKind::Release => ApiResource::erase::<Release>(&()),
        ObjectKind::Usage => ApiResource::erase::<Usage>(&()),
    }
}

/// The requests on the objects of `kind`, listed and watched in every namespace or written
/// in `namespace`, at the path kube's `Api` has for them.
pub fn resource_request(kind: ObjectKind, namespace: Option<&str>) -> kube::core::Request {
    kube::core::Request::new(DynamicObject::url_path(&resource(kind), namespace))
}

/// A dynamic object as served, made into a [`LiveObject`]; list items may lack their kind.
/// Of `metadata.managedFields` only the other managers' field paths are kept (see
/// [`LiveObject::from_json`]). For the answers still read as a `DynamicObject` (a
/// delete's, the objects `plan --against live` lists); the watches and the applies decode
/// the server's text straight into the same live object ([`ServedObject`]). The status is
/// read for readiness and not kept ([`LiveObject::without_status`]).
pub fn to_live(kind: ObjectKind, mut object: DynamicObject) -> Option<LiveObject> {
    // The object's fields (spec, status) move into the JSON as they are, and of the
    // managed fields only the entries read are serialised: this agent's own (a Release's
    // every value) and the provider's status would be dropped at once.
    if let Some(entries) = object.metadata.managed_fields.as_mut() {
        entries.retain(|e| {
            is_other_writer(
                e.manager.as_deref().unwrap_or_default(),
                e.subresource.as_deref(),
            )
        });
    }
    let mut map = match object.data {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        _ => return None,
    };
    map.insert(
        "metadata".into(),
        serde_json::to_value(object.metadata).ok()?,
    );
    map.insert("kind".into(), kind.as_str().into());
    map.insert("apiVersion".into(), kind.api_version().into());
    LiveObject::from_json(serde_json::Value::Object(map)).map(LiveObject::without_status)
}

/// A failed call on `at`, typed by what the server answered.
fn error(cluster: &str, at: &ObjectRef, e: kube::Error) -> Error {
    let (cluster, object) = (cluster.to_string(), at.to_string());
    match e {
        kube::Error::Api(status) if status.code == 409 => Error::Conflict {
            cluster,
            object,
            message: error_chain::server_message(&status),
        },
        kube::Error::Api(status) => Error::Api {
            cluster,
            object,
            code: status.code,
            message: error_chain::server_message(&status),
            reason: status.reason,
        },
        e => Error::Unreachable {
            cluster,
            object,
            cause: error_chain::chain(&e),
        },
    }
}

/// What a delete's answer says is left: the object, terminating, while finalizers hold
/// it; `None` once it is gone. An object deleted at once is answered with a `Status`
/// (`Success`, as a real API server does for an object without finalizers) or, for a
/// custom resource, with the object as it was, without a deletion timestamp: both are
/// deleted.
fn still_there(kind: ObjectKind, answer: Either<DynamicObject, Status>) -> Option<LiveObject> {
    answer
        .left()
        .and_then(|held| to_live(kind, held))
        .filter(LiveObject::terminating)
}

/// Writes to one cluster.
pub struct Writer {
    pub client: ClusterClient,
    pub cluster: String,
    pub timeout: Duration,
    /// Who writes, as each Event names its reporter (an apply's body says so already,
    /// from the plan: [`fleet_core::reconcile::ClusterInput::applied_by`]).
    pub applied_by: String,
    /// Checked just before every write: under leader election, only the leader writes.
    pub fence: crate::agent::leader::Fence,
    /// Set when the fence refused a write: the pass says nothing of the cluster's health
    /// then (under `--shards` a shard's fence can close and reopen within one pass).
    pub refused: std::sync::atomic::AtomicBool,
}

impl Writer {
    fn request(&self, at: &ObjectRef) -> kube::core::Request {
        resource_request(at.kind, Some(&at.namespace))
    }

    fn error(&self, at: &ObjectRef, e: kube::Error) -> Error {
        error(&self.cluster, at, e)
    }

    /// Refuses to start a write once the fence is closed.
    fn fenced(&self, at: &ObjectRef) -> Result<(), Error> {
        if self.fence.allows_writes() {
            Ok(())
        } else {
            self.refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Err(Error::Fenced {
                cluster: self.cluster.clone(),
                object: at.to_string(),
            })
        }
    }

    async fn bounded<T>(
        &self,
        at: &ObjectRef,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| self.error(at, e)),
            Err(_) => Err(Error::Timeout {
                cluster: self.cluster.clone(),
                object: at.to_string(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Server-side apply; `force` as the plan decided ([`fleet_core::reconcile::diff::forces`]),
    /// so that a conflict with another manager over a new revision is reported instead of
    /// overridden.
    pub async fn apply(
        &self,
        object: &ApplyBody,
        force: bool,
    ) -> Result<Option<LiveObject>, Error> {
        let at = &object.at;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if force {
            params = params.force();
        }
        // `Api::patch`'s request, its answer decoded as a watch's objects are
        // ([`ServedObject`]): three answers a cluster, each a whole Release, at a cold start.
        let mut request = self
            .request(at)
            .patch(&at.name, &params, &Patch::Apply(&*object.json))
            .map_err(|e| self.error(at, kube::Error::BuildRequest(e)))?;
        request.extensions_mut().insert("patch");
        self.fenced(at)?;
        let served = self
            .bounded(at, self.client.request::<ServedObject>(request))
            .await?;
        Ok(served.into_live(at.kind))
    }

    /// Deletes; an object already gone counts as deleted. When finalizers hold the object,
    /// the server answers with it, now terminating, and so does this: it still protects or
    /// blocks what comes after it in the prune order until the watch reports it gone.
    pub async fn delete(&self, at: &ObjectRef) -> Result<Option<LiveObject>, Error> {
        let mut request = self
            .request(at)
            .delete(&at.name, &DeleteParams::default())
            .map_err(|e| self.error(at, kube::Error::BuildRequest(e)))?;
        request.extensions_mut().insert("delete");
        self.fenced(at)?;
        let answer = self.client.request_status::<DynamicObject>(request);
        match self.bounded(at, answer).await {
            Ok(answer) => Ok(still_there(at.kind, answer)),
            Err(Error::Api { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records an Event about `at`. Best effort: a cluster that refuses Events still gets
    /// reconciled, so the failure is only logged.
    pub async fn event(
        &self,
        at: &ObjectRef,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let suffix = format!("{:016x}", fastrand::u64(..));
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{suffix}", at.name)),
                namespace: Some(at.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note.chars().take(1000).collect()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_string()),
            reporting_controller: Some("ops.com.ai/psql-fleet".to_string()),
            // Which replica reported it (events.k8s.io allows 128 characters).
            reporting_instance: Some(self.applied_by.chars().take(128).collect()),
            regarding: Some(ObjectReference {
                api_version: Some(at.kind.api_version().to_string()),
                kind: Some(at.kind.as_str().to_string()),
                name: Some(at.name.clone()),
                namespace: Some(at.namespace.clone()),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        let request = serde_json::to_vec(&event)
            .map_err(kube::Error::SerdeError)
            .and_then(|body| {
                kube::core::Request::new(Event::url_path(&(), Some(&at.namespace)))
                    .create(&PostParams::default(), body)
                    .map_err(kube::Error::BuildRequest)
            });
        if self.fenced(at).is_err() {
            return;
        }
        let created = async { self.client.call(request?).await };
        if let Err(e) = self.bounded(at, created).await {
            tracing::debug!(cluster = %self.cluster, object = %at, error = %e, "event not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_object_reads_as_its_whole_serialisation_would() {
        let served = serde_json::json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {
                "name": "stackgres-operator",
                "namespace": "payments",
                "resourceVersion": "7",
                "labels": {"hops.ops.com.ai/psql": "payments"},
                "managedFields": [
                    {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:00Z",
                     "fieldsV1": {"f:spec": {"f:forProvider": {"f:chart": {"f:version": {}}}}}},
                    {"manager": "psql-fleet", "operation": "Apply",
                     "fieldsV1": {"f:spec": {"f:forProvider": {"f:chart": {"f:name": {}}}}}},
                    {"manager": "provider-helm", "operation": "Update", "subresource": "status",
                     "fieldsV1": {"f:status": {"f:conditions": {}}}},
                ],
            },
            "spec": {"forProvider": {"chart": {"version": "1.18.4"}}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        let object: DynamicObject = serde_json::from_value(served.clone()).unwrap();
        let whole = LiveObject::from_json(serde_json::to_value(&object).unwrap()).unwrap();
        let live = to_live(ObjectKind::Release, object).unwrap();
        assert_eq!(live, whole.without_status());
        let fields = ["spec.forProvider.chart.version".to_string()];
        assert_eq!(
            live.last_writer_of(&fields).map(|w| w.manager),
            Some("kubectl-edit".to_string()),
            "the other writer is still read"
        );
    }

    fn at() -> ObjectRef {
        ObjectRef {
            kind: ObjectKind::Release,
            name: "stackgres-operator".into(),
            namespace: "payments".into(),
        }
    }

    fn answered(status: Status) -> String {
        error("prod-eu-1", &at(), kube::Error::Api(status.boxed())).to_string()
    }

    #[test]
    fn an_api_error_quotes_the_status_message() {
        let status =
            Status::failure(r#"namespaces "payments" not found"#, "NotFound").with_code(404);
        assert_eq!(
            answered(status),
            r#"cluster prod-eu-1: Release payments/stackgres-operator: API server answered 404 NotFound: namespaces "payments" not found"#
        );
        let bare = Status::failure("", "InternalError").with_code(500);
        assert!(answered(bare).ends_with("answered 500 InternalError"));
        // kube-apiserver's answer to an applied field its schema does not declare: no reason.
        let undeclared = Status::failure(
            "failed to create typed patch object (payments/stackgres-operator; helm.m.crossplane.io/v1beta1, Kind=Release): .spec.rollbackLimitt: field not declared in schema",
            "",
        )
        .with_code(500);
        let said = answered(undeclared);
        assert!(
            said.contains("answered 500: failed to create typed patch object")
                && said.contains(".spec.rollbackLimitt: field not declared in schema"),
            "{said}"
        );
    }

    #[test]
    fn a_body_that_is_not_a_status_or_that_mentions_credentials_is_not_quoted() {
        // What kube-rs makes of a proxy's page that echoes the request.
        let echo = "GET /apis HTTP/1.1\nAuthorization: Bearer s3cret";
        let proxy = Status::failure(echo, error_chain::NOT_A_STATUS).with_code(502);
        let said = answered(proxy);
        assert!(
            !said.contains("s3cret") && !said.contains("Bearer"),
            "{said}"
        );
        for message in ["invalid bearer s3cret", "token s3cret expired"] {
            let status = Status::failure(message, "BadRequest").with_code(400);
            let said = answered(status);
            assert!(!said.contains("s3cret"), "{said}");
            assert!(said.contains("withheld"), "{said}");
            let conflict = Status::failure(message, "Conflict").with_code(409);
            assert!(!answered(conflict).contains("s3cret"));
        }
        let long = Status::failure(&"x\n".repeat(400), "Invalid").with_code(422);
        let said = answered(long);
        assert!(!said.contains('\n') && said.len() < 500, "{said}");
    }

    fn served(deletion_timestamp: Option<&str>) -> DynamicObject {
        let mut metadata = serde_json::json!({
            "name": "atlas-operator",
            "namespace": "payments",
            "finalizers": ["finalizer.managedresource.crossplane.io"],
        });
        if let Some(at) = deletion_timestamp {
            metadata["deletionTimestamp"] = at.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": metadata,
            "spec": {},
        }))
        .unwrap()
    }

    #[test]
    fn a_delete_answered_with_success_or_the_object_as_it_was_is_deleted_and_one_with_a_deletion_timestamp_is_terminating(
    ) {
        let kind = ObjectKind::Release;
        let mut success = Status::success();
        success.code = 200;
        assert!(still_there(kind, Either::Right(success)).is_none());
        assert!(still_there(kind, Either::Left(served(None))).is_none());
        let held = still_there(kind, Either::Left(served(Some("2026-12-03T11:00:00Z"))))
            .expect("a terminating object is still there");
        assert!(held.terminating());
        assert_eq!(held.object_ref.name, "atlas-operator");
    }
}
