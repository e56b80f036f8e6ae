//! Cluster API's `Cluster` (`cluster.x-k8s.io/v1beta1`), which the agent reads on a
//! management cluster to find the clusters of its fleet, and which a simulated management
//! cluster serves. Modelled on the upstream CRD (`config/crd/bases/cluster.x-k8s.io_clusters.yaml`
//! in kubernetes-sigs/cluster-api): the fields, types and printer columns of v1beta1, with
//! `topology` and the v1beta2 status block kept as free-form objects, since nothing here
//! reads inside them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const GROUP: &str = "cluster.x-k8s.io";
pub const VERSION: &str = "v1beta1";
pub const KIND: &str = "Cluster";
/// The CRD that serves it.
pub const CRD_NAME: &str = "clusters.cluster.x-k8s.io";
/// The condition Cluster API sets once the control plane answers (v1beta1).
pub const CONTROL_PLANE_INITIALIZED: &str = "ControlPlaneInitialized";

/// A workload cluster Cluster API provisions.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "cluster.x-k8s.io",
    version = "v1beta1",
    kind = "Cluster",
    plural = "clusters",
    shortname = "cl",
    namespaced,
    status = "ClusterStatus",
    category = "cluster-api",
    printcolumn = r#"{"name":"ClusterClass","type":"string","description":"ClusterClass of this Cluster, empty if the Cluster is not using a ClusterClass","jsonPath":".spec.topology.class"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","description":"Cluster status such as Pending/Provisioning/Provisioned/Deleting/Failed","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","description":"Time duration since creation of Cluster","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"Kubernetes version associated with this Cluster","jsonPath":".spec.topology.version"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_network: Option<ClusterNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<ApiEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_ref: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub topology: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_gates: Option<Vec<AvailabilityGate>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NetworkRanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<NetworkRanges>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_domain: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRanges {
    pub cidr_blocks: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ApiEndpoint {
    pub host: String,
    pub port: i32,
}

/// corev1.ObjectReference, as controller-gen writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityGate {
    pub condition_type: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ClusterCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domains: Option<BTreeMap<String, FailureDomain>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub v1beta2: Option<Map<String, Value>>,
}

/// Cluster API's own condition (it has `severity`, and no `observedGeneration`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::date_time")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub status: String,
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDomain {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<bool>,
}

/// Whether the Cluster's control plane has come up once, read from whichever API version
/// wrote the status: v1beta2's `status.initialization.controlPlaneInitialized`, or v1beta1's
/// `ControlPlaneInitialized` condition or `status.controlPlaneReady`. Its kubeconfig is
/// only worth using from then on.
pub fn control_plane_initialized(status: &Value) -> bool {
    let initialised = status
        .pointer("/initialization/controlPlaneInitialized")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let condition = status["conditions"].as_array().is_some_and(|conditions| {
        conditions
            .iter()
            .any(|c| c["type"] == CONTROL_PLANE_INITIALIZED && c["status"] == "True")
    });
    let ready = status["controlPlaneReady"].as_bool().unwrap_or(false);
    initialised || condition || ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_control_plane_counts_as_up_by_any_version_s_field() {
        assert!(!control_plane_initialized(&json!({})));
        assert!(!control_plane_initialized(
            &json!({"phase": "Provisioning", "controlPlaneReady": false})
        ));
        assert!(control_plane_initialized(
            &json!({"controlPlaneReady": true})
        ));
        assert!(control_plane_initialized(&json!({"conditions": [
            {"type": "ControlPlaneInitialized", "status": "True"}
        ]})));
        assert!(!control_plane_initialized(&json!({"conditions": [
            {"type": "ControlPlaneInitialized", "status": "False"}
        ]})));
        assert!(control_plane_initialized(
            &json!({"initialization": {"controlPlaneInitialized": true}})
        ));
    }
}
