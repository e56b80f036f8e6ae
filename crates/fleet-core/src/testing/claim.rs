//! The `Psql` claim builders: a claim naming its cluster or selecting clusters by label,
//! its two components, and several claims in one file.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{selector, yaml, Document};
use crate::api::psql::{
    ClusterCustomization, ComponentSpec, ProviderConfigKind, ProviderConfigRef, PsqlSpec,
    ValuesCustomization,
};
use crate::model::claim::{PSQL_API_VERSION, PSQL_KIND, SUSPEND_ANNOTATION};
use crate::model::selector::LabelSelector;

/// A `Psql` claim (`claims/<cluster>/<name>.yaml` unless put in a [`ClaimsFile`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    name: String,
    namespace: Option<String>,
    annotations: BTreeMap<String, String>,
    spec: PsqlSpec,
    /// Raw `spec` fields set over the typed ones, for tests of input the types refuse.
    raw: Map<String, Value>,
}

/// A claim `name` for `cluster`, in the `default` namespace, with every field at its
/// default.
pub fn claim(name: &str, cluster: &str) -> Claim {
    Claim {
        name: name.into(),
        namespace: None,
        annotations: BTreeMap::new(),
        spec: PsqlSpec {
            cluster_name: cluster.into(),
            ..PsqlSpec::default()
        },
        raw: Map::new(),
    }
}

/// A claim `name` for every cluster whose labels include `match_labels`
/// (`spec.clusterSelector`), in `claims/selected/<name>.yaml`.
pub fn selector_claim(name: &str, match_labels: &[(&str, &str)]) -> Claim {
    claim(name, "").cluster_selector(selector(match_labels))
}

impl Claim {
    /// Selects its clusters by `selector` instead of naming one.
    pub fn cluster_selector(mut self, selector: LabelSelector) -> Claim {
        self.spec.cluster_name = String::new();
        self.spec.cluster_selector = Some(selector);
        self
    }

    /// Appends a `spec.clusterCustomizations` entry: for the clusters whose labels include
    /// `match_labels`, these `values` of each operator (`None` leaves it alone).
    pub fn customize(
        mut self,
        match_labels: &[(&str, &str)],
        stackgres: Option<Value>,
        atlas: Option<Value>,
    ) -> Claim {
        let values = |v: Option<Value>| {
            v.map(|v| ValuesCustomization {
                values: Some(object(v)),
                override_all_values: None,
            })
        };
        self.spec.cluster_customizations.push(ClusterCustomization {
            selector: selector(match_labels),
            stackgres_operator: values(stackgres),
            atlas_operator: values(atlas),
        });
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cluster(&self) -> &str {
        &self.spec.cluster_name
    }

    /// The namespace its Releases and Usage live in (`default` when unset).
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// Where the Releases and the Usage live.
    pub fn namespace(mut self, namespace: &str) -> Claim {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Claim {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Suspended by its annotation: nothing applied or pruned for it.
    pub fn suspended(self) -> Claim {
        self.annotation(SUSPEND_ANNOTATION, "true")
    }

    /// Where the charts install (`spec.namespace`).
    pub fn install_namespace(mut self, namespace: &str) -> Claim {
        self.spec.namespace = Some(namespace.into());
        self
    }

    /// A label for every rendered object (`spec.labels`).
    pub fn label(mut self, key: &str, value: &str) -> Claim {
        self.spec
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn management_policies(mut self, policies: &[&str]) -> Claim {
        self.spec.management_policies = Some(policies.iter().map(ToString::to_string).collect());
        self
    }

    /// `spec.helmProviderConfigRef`.
    pub fn provider_config(
        mut self,
        name: Option<&str>,
        kind: Option<ProviderConfigKind>,
    ) -> Claim {
        self.spec.helm_provider_config_ref = Some(ProviderConfigRef {
            name: name.map(Into::into),
            kind,
        });
        self
    }

    pub fn stackgres(mut self, component: Component) -> Claim {
        self.spec.stackgres_operator = Some(component.0);
        self
    }

    pub fn atlas(mut self, component: Component) -> Claim {
        self.spec.atlas_operator = Some(component.0);
        self
    }

    /// Sets `spec.<key>` to any value, over the typed fields: for the tests of a claim the
    /// loader must refuse (an unknown `kind`, a wrong type).
    pub fn raw_spec_field(mut self, key: &str, value: Value) -> Claim {
        self.raw.insert(key.into(), value);
        self
    }

    fn spec_value(&self) -> Value {
        let mut spec = serde_json::to_value(&self.spec).expect("a claim's spec serialises");
        if let Value::Object(fields) = &mut spec {
            fields.extend(self.raw.clone());
        }
        spec
    }
}

impl Document for Claim {
    fn path(&self) -> String {
        match self.spec.cluster_selector {
            Some(_) => format!("claims/selected/{}.yaml", self.name),
            None => format!("claims/{}/{}.yaml", self.spec.cluster_name, self.name),
        }
    }

    fn to_yaml(&self) -> String {
        let mut metadata = json!({ "name": self.name });
        if let Some(namespace) = &self.namespace {
            metadata["namespace"] = json!(namespace);
        }
        if !self.annotations.is_empty() {
            metadata["annotations"] = json!(self.annotations);
        }
        yaml(PSQL_API_VERSION, PSQL_KIND, metadata, &self.spec_value())
    }
}

/// One operator of a claim's stack (`stackgresOperator`, `atlasOperator`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Component(ComponentSpec);

/// A component with every field at its default.
pub fn component() -> Component {
    Component::default()
}

impl Component {
    /// Its Release name.
    pub fn name(mut self, name: &str) -> Component {
        self.0.name = Some(name.into());
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Component {
        self.0.namespace = Some(namespace.into());
        self
    }

    /// Values deep-merged over the chart's defaults (a JSON object).
    pub fn values(mut self, values: Value) -> Component {
        self.0.values = Some(object(values));
        self
    }

    /// Values used alone, when non-empty (a JSON object).
    pub fn override_all_values(mut self, values: Value) -> Component {
        self.0.override_all_values = Some(object(values));
        self
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("chart values must be an object, got {other}"),
    }
}

/// Several claims in one file, as a multi-document YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimsFile {
    path: String,
    claims: Vec<Claim>,
}

/// `claims` in one file at `path` (under `claims/`).
pub fn claims_file(path: &str, claims: Vec<Claim>) -> ClaimsFile {
    ClaimsFile {
        path: path.into(),
        claims,
    }
}

impl Document for ClaimsFile {
    fn path(&self) -> String {
        self.path.clone()
    }

    fn to_yaml(&self) -> String {
        self.claims
            .iter()
            .map(Claim::to_yaml)
            .collect::<Vec<_>>()
            .join("---\n")
    }
}
