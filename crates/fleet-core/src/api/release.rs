//! provider-helm's namespaced `Release` (`helm.m.crossplane.io/v1beta1`), modelled field for
//! field on the upstream CRD so that the CRD generated from it matches upstream.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::condition::{self, Condition};

pub const GROUP: &str = "helm.m.crossplane.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "helm.m.crossplane.io/v1beta1";
pub const KIND: &str = "Release";

/// A Helm release that provider-helm installs on the cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "helm.m.crossplane.io",
    version = "v1beta1",
    kind = "Release",
    namespaced,
    status = "ReleaseStatus",
    category = "crossplane",
    category = "managed",
    category = "helm",
    printcolumn = r#"{"name":"CHART","type":"string","jsonPath":".spec.forProvider.chart.name"}"#,
    printcolumn = r#"{"name":"VERSION","type":"string","jsonPath":".spec.forProvider.chart.version"}"#,
    printcolumn = r#"{"name":"SYNCED","type":"string","jsonPath":".status.conditions[?(@.type=='Synced')].status"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"STATE","type":"string","jsonPath":".status.atProvider.state"}"#,
    printcolumn = r#"{"name":"REVISION","type":"string","jsonPath":".status.atProvider.revision"}"#,
    printcolumn = r#"{"name":"DESCRIPTION","type":"string","jsonPath":".status.atProvider.releaseDescription"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_details: Option<Vec<ConnectionDetail>>,
    pub for_provider: ReleaseParameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "crate::api::schema::management_policies",
        extend("default" = ["*"])
    )]
    pub management_policies: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"kind": "ClusterProviderConfig", "name": "default"}))]
    pub provider_config_ref: Option<ProviderConfigReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalSecretReference>,
}

/// The configurable fields of a Release.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseParameters {
    pub chart: ChartSpec,
    #[serde(
        default,
        rename = "insecureSkipTLSVerify",
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::plain_integer", extend("default" = 20))]
    pub max_history: Option<i64>,
    /// Namespace to install the release into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches_from: Option<Vec<ValueFromSource>>,
    #[serde(default, rename = "plainHTTP", skip_serializing_if = "Option::is_none")]
    pub plain_http: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<SetVal>>,
    #[serde(default, rename = "skipCRDs", skip_serializing_if = "Option::is_none")]
    pub skip_crds: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_create_namespace: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssa_force_conflicts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_ownership: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub values: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_from: Option<Vec<ValueFromSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<String>,
}

/// Where the chart comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = "^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret_ref: Option<LocalSecretReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigReference {
    pub kind: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalSecretReference {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct ConnectionDetail {
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
    pub skip_part_of_release_check: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_connection_secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetVal {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFromSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFromSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<DataKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<DataKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DataKeySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// What provider-helm reports about the installed release.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_provider: Option<ReleaseObservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseObservation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_taken: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::plain_integer")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Whether a Release is ready, and if not, why (SPEC 1.6): `reason` for people, `cause`
/// from a fixed set for the `psql_fleet_release_not_ready_reason` series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady {
        reason: String,
        cause: NotReadyCause,
    },
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }

    pub fn cause(&self) -> Option<NotReadyCause> {
        match self {
            Self::Ready => None,
            Self::NotReady { cause, .. } => Some(*cause),
        }
    }
}

/// Why a Release is not ready, as a bounded label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReadyCause {
    /// The Release does not exist on the cluster.
    Missing,
    /// It exists but reports no `Ready` condition yet.
    NoCondition,
    ReadyFalse,
    /// `Ready=Unknown`, or any status other than `True` or `False`, or `Ready=True` said
    /// of an older generation of the spec.
    ReadyUnknown,
    /// The cluster has not been read since the agent started (unreachable, no kubeconfig).
    Unobserved,
}

impl NotReadyCause {
    pub const ALL: [NotReadyCause; 5] = [
        Self::Missing,
        Self::NoCondition,
        Self::ReadyFalse,
        Self::ReadyUnknown,
        Self::Unobserved,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NoCondition => "no_condition",
            Self::ReadyFalse => "ready_false",
            Self::ReadyUnknown => "ready_unknown",
            Self::Unobserved => "unobserved",
        }
    }
}

impl ReleaseStatus {
    /// Ready only when `Ready=True`; otherwise the condition's reason and message, if any.
    /// Read from the conditions alone, which is all of a status readiness depends on.
    pub fn readiness(conditions: Option<&[Condition]>) -> Readiness {
        match condition::find(conditions, "Ready") {
            Some(c) if c.status == "True" => Readiness::Ready,
            Some(c) => {
                let mut reason = format!("Ready={} ({})", c.status, c.reason);
                if let Some(message) = c.message.as_deref().filter(|m| !m.is_empty()) {
                    reason.push_str(": ");
                    reason.push_str(message);
                }
                let cause = if c.status == "False" {
                    NotReadyCause::ReadyFalse
                } else {
                    NotReadyCause::ReadyUnknown
                };
                Readiness::NotReady { reason, cause }
            }
            None => Readiness::NotReady {
                reason: "no Ready condition reported yet".to_string(),
                cause: NotReadyCause::NoCondition,
            },
        }
    }
}
