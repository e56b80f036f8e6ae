//! provider-helm's `ProviderConfig` (namespaced) and `ClusterProviderConfig` (cluster-scoped)
//! in `helm.m.crossplane.io/v1beta1`, modelled on the upstream CRDs: how provider-helm
//! reaches the cluster a Release installs into.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// Configures a Helm provider connection, in one namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "helm.m.crossplane.io",
    version = "v1beta1",
    kind = "ProviderConfig",
    namespaced,
    status = "ProviderConfigStatus",
    category = "crossplane",
    category = "provider",
    category = "helm",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // Upstream names `credentialsSecretRef` here although the field is `credentials.secretRef`;
    // the column mirrors upstream so that `kubectl get` prints what a real cluster prints.
    printcolumn = r#"{"name":"SECRET-NAME","type":"string","priority":1,"jsonPath":".spec.credentialsSecretRef.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigSpec {
    pub credentials: ProviderCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// Configures a Helm provider connection for the whole cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "helm.m.crossplane.io",
    version = "v1beta1",
    kind = "ClusterProviderConfig",
    status = "ProviderConfigStatus",
    category = "crossplane",
    category = "provider",
    // Upstream's generator left another provider's category here; mirrored for fidelity.
    category = "azuread",
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"SECRET-NAME","type":"string","priority":1,"jsonPath":".spec.credentials.secretRef.name"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProviderConfigSpec {
    pub credentials: ProviderCredentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// Where the kubeconfig (or other credentials) come from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    pub source: CredentialsSource,
}

/// Identity used to authenticate to the cluster, on top of the credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeySelector>,
    pub source: CredentialsSource,
    #[serde(rename = "type")]
    pub type_: IdentityType,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CredentialsSource {
    #[default]
    None,
    Secret,
    InjectedIdentity,
    Environment,
    Filesystem,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IdentityType {
    #[default]
    GoogleApplicationCredentials,
    AzureServicePrincipalCredentials,
    AzureWorkloadIdentityCredentials,
    UpboundTokens,
    AWSWebIdentityCredentials,
    NebiusServiceAccountCredentials,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct EnvSelector {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct FsSelector {
    pub path: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretKeySelector {
    pub key: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ProviderConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
}
