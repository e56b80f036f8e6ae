//! The resource types every simulated cluster serves: a few built-ins with loose schemas,
//! and the Crossplane kinds from CRDs generated from the project's own Rust types.

use kube::CustomResourceExt;
use serde_json::{json, Value};

use fleet_core::api::cluster_api;
use fleet_core::api::{ClusterProviderConfig, ClusterUsage, ProviderConfig, Release, Usage};

/// The CRD that serves provider-helm's namespaced `Release`.
pub const RELEASE_CRD: &str = "releases.helm.m.crossplane.io";
/// The CRD that serves Crossplane's namespaced `Usage`.
pub const USAGE_CRD: &str = "usages.protection.crossplane.io";

/// One served resource (group, version, plural) and what the server knows about it.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// `openAPIV3Schema` for CRD-backed kinds: drives pruning, validation and OpenAPI.
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
    /// The CRD object itself, stored in every cluster so `kubectl get crd` lists it.
    pub crd: Option<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the strategic-merge content type is accepted: only compiled-in types have
    /// patch strategies; the API server answers 415 for custom resources.
    pub fn is_builtin(&self) -> bool {
        self.crd.is_none()
    }

    /// Field selectors the API server indexes for this resource.
    pub fn field_selectors(&self) -> &'static [&'static str] {
        match (self.group.as_str(), self.plural.as_str()) {
            ("", "events") => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("events.k8s.io", "events") => &[
                "metadata.name",
                "metadata.namespace",
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "type",
            ],
            ("", "namespaces") => &["metadata.name", "status.phase"],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if kind == "Deployment" {
            vec!["all".into()]
        } else {
            Vec::new()
        },
        status_subresource: status,
        schema: None,
        printer_columns: Vec::new(),
        crd: None,
    }
}

fn from_crd(crd: Value) -> ResourceType {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let version = &spec["versions"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    ResourceType {
        group: s(&spec["group"]),
        version: s(&version["name"]),
        kind: s(&names["kind"]),
        plural: s(&names["plural"]),
        singular: s(&names["singular"]),
        namespaced: spec["scope"] == "Namespaced",
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        status_subresource: version.pointer("/subresources/status").is_some(),
        schema: version.pointer("/schema/openAPIV3Schema").cloned(),
        printer_columns: version["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        crd: Some(crd),
    }
}

/// The CRDs the simulator serves, generated from the project's types.
pub fn generated_crds() -> Vec<Value> {
    [
        serde_json::to_value(Release::crd()),
        serde_json::to_value(ProviderConfig::crd()),
        serde_json::to_value(ClusterProviderConfig::crd()),
        serde_json::to_value(Usage::crd()),
        serde_json::to_value(ClusterUsage::crd()),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .map(like_controller_gen)
    .collect()
}

/// Adds what controller-gen writes and kube's generator leaves out (listKind and the root
/// apiVersion/kind/metadata properties), so the served CRDs read like the upstream ones.
fn like_controller_gen(mut crd: Value) -> Value {
    // kube's generator marks every `Option` nullable; controller-gen marks a field
    // nullable only when asked (`+nullable`), which none of these upstream fields is, so
    // the API server refuses null in them.
    if let Some(schema) = crd.pointer_mut("/spec/versions") {
        drop_nullable(schema);
    }
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    crd["spec"]["names"]["listKind"] = Value::String(format!("{kind}List"));
    if let Some(versions) = crd["spec"]["versions"].as_array_mut() {
        for v in versions {
            if let Some(props) = v
                .pointer_mut("/schema/openAPIV3Schema/properties")
                .and_then(Value::as_object_mut)
            {
                props.insert("apiVersion".into(), json!({"type": "string"}));
                props.insert("kind".into(), json!({"type": "string"}));
                props.insert("metadata".into(), json!({"type": "object"}));
            }
        }
    }
    crd
}

/// Removes `nullable` from every schema under `v` (property names are left alone).
fn drop_nullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("nullable").is_some_and(Value::is_boolean) {
                m.remove("nullable");
            }
            m.values_mut().for_each(drop_nullable);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nullable),
        _ => {}
    }
}

/// Every served resource type, in discovery order.
pub fn registry() -> Vec<ResourceType> {
    let mut types = vec![
        builtin("", "v1", "Namespace", "namespaces", false, &["ns"], true),
        builtin("", "v1", "Event", "events", true, &["ev"], false),
        // The agent's rollout state under leader election: written under a resourceVersion
        // precondition, and bounded in size as kube-apiserver bounds it.
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
        // Cluster API's kubeconfig Secrets, on a simulated management cluster.
        builtin("", "v1", "Secret", "secrets", true, &[], false),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            false,
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
        ),
        // Leader election: client-go's and kube-rs's leader electors take a Lease, updated
        // under a resourceVersion precondition (a stale one is 409 Conflict).
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
        ),
    ];
    types.extend(generated_crds().into_iter().map(from_crd));
    types.push(from_crd(cluster_api_crd()));
    types
}

/// CRDs a cluster serves only when it is made a management cluster
/// ([`crate::config::SimConfig::cluster_api`]) or they are installed later.
pub const OPTIONAL_CRDS: &[&str] = &[cluster_api::CRD_NAME];

/// Cluster API's `Cluster` CRD, generated from the project's model of it (the upstream CRD
/// is the reference; it is not copied here).
pub fn cluster_api_crd() -> Value {
    let mut crd = serde_json::to_value(cluster_api::Cluster::crd()).unwrap_or_default();
    crd["spec"]["versions"][0]["subresources"] = json!({"status": {}});
    like_controller_gen(crd)
}

/// A minimal apps/v1 Deployment as Helm would install it for an operator chart.
pub fn operator_deployment(namespace: &str, name: &str, release: &str, chart: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/managed-by": "Helm",
                "helm.sh/chart": chart,
            },
            "annotations": {
                "meta.helm.sh/release-name": release,
                "meta.helm.sh/release-namespace": namespace,
            }
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [{"name": name, "image": format!("{name}:simulated")}]}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_serves_the_crossplane_kinds_with_their_scope() {
        let r = registry();
        let find = |k: &str| r.iter().find(|t| t.kind == k).unwrap();
        assert!(find("Release").namespaced);
        assert!(find("Release").status_subresource);
        assert!(!find("ClusterProviderConfig").namespaced);
        assert_eq!(find("Usage").group, "protection.crossplane.io");
        assert!(find("Release").schema.is_some());
        assert!(find("Lease").namespaced);
        assert_eq!(find("Lease").api_version(), "coordination.k8s.io/v1");
    }
}
