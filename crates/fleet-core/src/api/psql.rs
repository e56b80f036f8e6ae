//! The `Psql` claim (`stacks.hops.ops.com.ai/v1alpha1`), exactly as the reference composition
//! declares it (SPEC 1.1), with its defaults as methods so every reader resolves them alike.

use std::collections::BTreeMap;
use std::fmt;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::model::selector::LabelSelector;

/// Claim name when `metadata.name` is absent.
pub const DEFAULT_CLAIM_NAME: &str = "psql";
/// Namespace of the rendered objects when `metadata.namespace` is absent.
pub const DEFAULT_CLAIM_NAMESPACE: &str = "default";
/// Namespace the charts install into when `spec.namespace` is absent.
pub const DEFAULT_INSTALL_NAMESPACE: &str = "stackgres";
/// Release name of the StackGres operator when `stackgresOperator.name` is absent.
pub const DEFAULT_STACKGRES_NAME: &str = "stackgres-operator";
/// Release name of the Atlas operator when `atlasOperator.name` is absent.
pub const DEFAULT_ATLAS_NAME: &str = "atlas-operator";

/// What a platform team asks for: the StackGres and Atlas operators on one cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    derive = "PartialEq",
    derive = "Default",
    group = "stacks.hops.ops.com.ai",
    version = "v1alpha1",
    kind = "Psql",
    namespaced,
    status = "PsqlStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PsqlSpec {
    /// The one cluster the stack goes to. A claim sets this or `clusterSelector`, never
    /// both; empty when unset, so a selector claim serialises without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// Every cluster whose labels match gets the stack, rendered exactly as a claim naming
    /// that cluster would be. The loader expands it into one claim per matching cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Per-cluster values of a selector claim: the first entry whose selector matches a
    /// cluster is merged over the claim's values for that cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_customizations: Vec<ClusterCustomization>,
    /// Namespace the charts install into (default `stackgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Extra labels for every rendered object; the two reference labels win on a clash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Copied to every Release (default `["*"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policies: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_provider_config_ref: Option<ProviderConfigRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stackgres_operator: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlas_operator: Option<ComponentSpec>,
}

/// Which provider-helm config the Releases use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfigRef {
    /// Default: the claim's `clusterName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default: `ProviderConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProviderConfigKind>,
}

/// The two kinds of provider-helm config a Release may reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ProviderConfigKind {
    #[default]
    ProviderConfig,
    ClusterProviderConfig,
}

impl ProviderConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderConfig => "ProviderConfig",
            Self::ClusterProviderConfig => "ClusterProviderConfig",
        }
    }
}

impl fmt::Display for ProviderConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProviderConfigKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// Hand-written so the error reads the way a person fixing the claim needs it, and raised
// inside the scalar's visitor so the parser attaches the field's own path and position.
impl<'de> Deserialize<'de> for ProviderConfigKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl serde::de::Visitor<'_> for KindVisitor {
            type Value = ProviderConfigKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ProviderConfig or ClusterProviderConfig")
            }
            fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<Self::Value, E> {
                match raw {
                    "ProviderConfig" => Ok(ProviderConfigKind::ProviderConfig),
                    "ClusterProviderConfig" => Ok(ProviderConfigKind::ClusterProviderConfig),
                    other => Err(E::custom(format!(
                        "expected ProviderConfig or ClusterProviderConfig, got {other:?}"
                    ))),
                }
            }
        }
        d.deserialize_str(KindVisitor)
    }
}

/// One operator of the stack: its Release name, install namespace and chart values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentSpec {
    /// Release name; not prefixed by the claim name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace the chart installs into (default: the claim's `spec.namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Deep-merged over the chart's default values; user values win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub values: Option<Map<String, Value>>,
    /// When non-empty, the values alone, with no defaults; an empty map counts as unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub override_all_values: Option<Map<String, Value>>,
}

/// What one group of a selector claim's clusters gets differently (`clusterCustomizations`,
/// after Rancher Fleet's `targetCustomizations`): chart values only, since names and
/// namespaces that vary by cluster would make the claim's objects hard to follow.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterCustomization {
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stackgres_operator: Option<ValuesCustomization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlas_operator: Option<ValuesCustomization>,
}

/// The values of one operator for the clusters a customization selects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValuesCustomization {
    /// Deep-merged over the claim's values for these clusters; these win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub values: Option<Map<String, Value>>,
    /// When non-empty, the values alone for these clusters: no defaults, no claim values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema::preserve_unknown_object")]
    pub override_all_values: Option<Map<String, Value>>,
}

/// Declared by the reference composition: true when both Releases are Ready.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PsqlStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

impl PsqlSpec {
    pub fn install_namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .unwrap_or(DEFAULT_INSTALL_NAMESPACE)
    }

    pub fn management_policies(&self) -> Vec<String> {
        self.management_policies
            .clone()
            .unwrap_or_else(|| vec!["*".to_string()])
    }

    pub fn provider_config_name(&self) -> &str {
        self.helm_provider_config_ref
            .as_ref()
            .and_then(|r| r.name.as_deref())
            .unwrap_or(&self.cluster_name)
    }

    pub fn provider_config_kind(&self) -> ProviderConfigKind {
        self.helm_provider_config_ref
            .as_ref()
            .and_then(|r| r.kind)
            .unwrap_or_default()
    }

    pub fn stackgres_name(&self) -> &str {
        component_name(self.stackgres_operator.as_ref(), DEFAULT_STACKGRES_NAME)
    }

    pub fn atlas_name(&self) -> &str {
        component_name(self.atlas_operator.as_ref(), DEFAULT_ATLAS_NAME)
    }

    /// Namespace the chart of `component` installs into.
    pub fn component_namespace<'a>(&'a self, component: Option<&'a ComponentSpec>) -> &'a str {
        component
            .and_then(|c| c.namespace.as_deref())
            .unwrap_or_else(|| self.install_namespace())
    }
}

fn component_name<'a>(component: Option<&'a ComponentSpec>, default: &'a str) -> &'a str {
    component.and_then(|c| c.name.as_deref()).unwrap_or(default)
}
