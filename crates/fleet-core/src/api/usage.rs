//! Crossplane's namespaced `Usage` (`protection.crossplane.io/v1beta1`): a deletion-blocking
//! relationship between two resources, modelled on the upstream CRD.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

pub const API_VERSION: &str = "protection.crossplane.io/v1beta1";
pub const KIND: &str = "Usage";

/// While it exists, `of` cannot be deleted; `by` is the resource using it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "protection.crossplane.io",
    version = "v1beta1",
    kind = "Usage",
    namespaced,
    status = "UsageStatus",
    category = "crossplane",
    printcolumn = r#"{"name":"DETAILS","type":"string","jsonPath":".metadata.annotations.crossplane\\.io/usage-details"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"message": "either \"spec.by\" or \"spec.reason\" must be specified.", "rule": "has(self.by) || has(self.reason)"},
    {"message": "cross-namespace \"spec.of\" is not allowed without \"spec.by\" resource.", "rule": "has(self.by) || (!has(self.of.resourceRef) || !has(self.of.resourceRef.__namespace__)) && (!has(self.of.resourceSelector) || !has(self.of.resourceSelector.__namespace__))"}
]))]
pub struct UsageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Resource>,
    pub of: NamespacedResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_deletion: Option<bool>,
}

/// Crossplane's cluster-scoped `ClusterUsage`: a Usage between cluster-scoped resources.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "protection.crossplane.io",
    version = "v1beta1",
    kind = "ClusterUsage",
    status = "UsageStatus",
    category = "crossplane",
    printcolumn = r#"{"name":"DETAILS","type":"string","jsonPath":".metadata.annotations.crossplane\\.io/usage-details"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"message": "either \"spec.by\" or \"spec.reason\" must be specified.", "rule": "has(self.by) || has(self.reason)"}
]))]
pub struct ClusterUsageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Resource>,
    pub of: Resource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_deletion: Option<bool>,
}

/// The resource using the other one; it always resolves in the Usage's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"message": "either a resource reference or a resource selector should be set.", "rule": "has(self.resourceRef) || has(self.resourceSelector)"}
]))]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ref: Option<ResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_selector: Option<ResourceSelector>,
}

/// The resource being used; may name another namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"message": "either a resource reference or a resource selector should be set.", "rule": "has(self.resourceRef) || has(self.resourceSelector)"}
]))]
pub struct NamespacedResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ref: Option<NamespacedResourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_selector: Option<NamespacedResourceSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ResourceRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NamespacedResourceRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_controller_ref: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedResourceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_controller_ref: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct UsageStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
}
