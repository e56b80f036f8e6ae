//! Clusters found outside the fleet directory: Cluster API's `Cluster` objects on a
//! management cluster, each reached through the kubeconfig Secret Cluster API writes for
//! it. The agent carries them inside a revision's files, at a path no source can hold (a
//! hidden one, which neither a directory nor a Git tree hands over), so that a revision
//! kept for a later wave keeps the inventory it was rendered with, and a stored revision
//! renders the same clusters again after a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cluster::{Cluster, ClusterSpec};
use super::diagnostic::{Diagnostic, Origin};
use super::metadata::Metadata;
use super::names::check_dns_label;

/// Where the inventory sits in a revision's files.
pub const INVENTORY_PATH: &str = ".inventory/cluster-api.json";

/// The key of the kubeconfig in the Secret Cluster API writes (`<cluster>-kubeconfig`).
pub const KUBECONFIG_KEY: &str = "value";

/// The clusters found on the management cluster, in (namespace, name) order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inventory {
    pub clusters: Vec<FoundCluster>,
}

/// One Cluster API `Cluster` whose control plane is initialised.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FoundCluster {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl FoundCluster {
    /// The Secret that holds its kubeconfig, in its namespace.
    pub fn secret(&self) -> SecretRef {
        SecretRef {
            namespace: self.namespace.clone(),
            name: format!("{}-kubeconfig", self.name),
        }
    }

    /// Where a finding about it points: the object as `kubectl get` names it.
    pub fn origin(&self) -> Origin {
        Origin {
            file: format!("clusters.cluster.x-k8s.io/{}/{}", self.namespace, self.name),
            document: 0,
        }
    }
}

/// A Secret on the management cluster holding a kubeconfig under [`KUBECONFIG_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret {}/{}", self.namespace, self.name)
    }
}

impl Inventory {
    /// The stored form: compact JSON in a fixed order, so that the same clusters make the
    /// same bytes (and the same revision id).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted = self.clone();
        sorted.clusters.sort();
        serde_json::to_vec(&sorted).unwrap_or_default()
    }

    /// The fleet's `Cluster` entries for the stored inventory; what is wrong with it (a name
    /// the fleet cannot use) goes to `out`, naming the Cluster API object.
    pub fn clusters(bytes: &[u8], out: &mut Vec<Diagnostic>) -> Vec<Cluster> {
        let inventory: Inventory = match serde_json::from_slice(bytes) {
            Ok(inventory) => inventory,
            Err(e) => {
                out.push(Diagnostic::file(
                    INVENTORY_PATH,
                    format!("the Cluster API inventory does not parse: {e}"),
                ));
                return Vec::new();
            }
        };
        inventory
            .clusters
            .iter()
            .filter_map(|found| found.entry(out))
            .collect()
    }
}

impl FoundCluster {
    fn entry(&self, out: &mut Vec<Diagnostic>) -> Option<Cluster> {
        let origin = self.origin();
        let before = out.len();
        if let Err(e) = check_dns_label(&self.name) {
            out.push(Diagnostic::field(
                &origin,
                "metadata.name",
                format!("{e}; the fleet names a cluster by a DNS label"),
            ));
        }
        Metadata::check_labels(Some(&self.labels), &origin, "metadata.labels", out);
        let secret = self.secret();
        (out.len() == before).then(|| Cluster {
            origin,
            name: self.name.clone(),
            labels: self.labels.clone(),
            spec: ClusterSpec {
                // Never a path: `kubeconfig_secret` says where the kubeconfig is. Shown
                // where a cluster's kubeconfig is named, and compared by the check for two
                // entries reaching one API server.
                kubeconfig: format!("{secret}"),
                context: None,
                drift: None,
                suspend: None,
            },
            kubeconfig_secret: Some(secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(namespace: &str, name: &str, labels: &[(&str, &str)]) -> FoundCluster {
        FoundCluster {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_stored_form_does_not_depend_on_the_order_found() {
        let a = Inventory {
            clusters: vec![found("b", "x", &[]), found("a", "y", &[("env", "prod")])],
        };
        let mut b = a.clone();
        b.clusters.reverse();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mut out = Vec::new();
        let clusters = Inventory::clusters(&a.to_bytes(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(clusters[0].name, "y");
        assert_eq!(clusters[0].labels["env"], "prod");
        assert_eq!(
            clusters[0].kubeconfig_secret,
            Some(SecretRef {
                namespace: "a".into(),
                name: "y-kubeconfig".into()
            })
        );
    }

    #[test]
    fn a_name_the_fleet_cannot_use_is_an_error_naming_the_cluster_api_object() {
        let inventory = Inventory {
            clusters: vec![found("capi", "Not_A_Label", &[]), found("capi", "ok", &[])],
        };
        let mut out = Vec::new();
        let clusters = Inventory::clusters(&inventory.to_bytes(), &mut out);
        assert_eq!(clusters.len(), 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].file, "clusters.cluster.x-k8s.io/capi/Not_A_Label");
        assert_eq!(out[0].field.as_deref(), Some("metadata.name"));
    }

    /// A fleet directory's files with `inventory` stored beside them.
    fn load_with(
        files: crate::testing::FleetFiles,
        inventory: &Inventory,
    ) -> crate::fleetdir::LoadOutcome {
        let mut tree = files.tree();
        tree.insert(INVENTORY_PATH, inventory.to_bytes());
        crate::fleetdir::load(&tree)
    }

    #[test]
    fn found_clusters_are_selected_by_their_labels_like_cluster_files() {
        use crate::testing::{cluster, selector_claim, FleetFiles};
        let files = FleetFiles::new()
            .with(&cluster("from-git").label("env", "prod"))
            .with(&selector_claim("db", &[("env", "prod")]));
        let inventory = Inventory {
            clusters: vec![
                found("capi", "prod-1", &[("env", "prod")]),
                found("capi", "dev-1", &[("env", "dev")]),
            ],
        };
        let outcome = load_with(files, &inventory);
        let fleet = outcome.fleet.expect("valid");
        assert_eq!(fleet.clusters.len(), 3);
        assert_eq!(fleet.claims_of("prod-1").count(), 1);
        assert_eq!(fleet.claims_of("dev-1").count(), 0);
        assert_eq!(fleet.claims_of("from-git").count(), 1);
        assert!(fleet.clusters["prod-1"].kubeconfig_secret.is_some());
        assert!(fleet.clusters["from-git"].kubeconfig_secret.is_none());
    }

    #[test]
    fn a_found_cluster_named_like_a_cluster_file_is_an_error_naming_both() {
        use crate::testing::{cluster, FleetFiles};
        let files = FleetFiles::new().with(&cluster("prod-1"));
        let inventory = Inventory {
            clusters: vec![found("capi", "prod-1", &[])],
        };
        let outcome = load_with(files, &inventory);
        assert!(outcome.fleet.is_none());
        let error = outcome.errors().next().expect("an error").to_string();
        assert!(
            error.contains("clusters.cluster.x-k8s.io/capi/prod-1"),
            "{error}"
        );
        assert!(error.contains("clusters/prod-1.yaml"), "{error}");
    }
}
