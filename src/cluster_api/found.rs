//! Which of the Cluster API `Cluster` objects on the management cluster are in the fleet:
//! a pure decision over what the watches last saw. A cluster joins once its control plane
//! is initialised and its kubeconfig Secret exists; until then it is waited for, not an
//! error. Once in, it stays in while its object exists (a control plane that is upgraded,
//! or a Secret being rotated, must not prune the claims' objects from it), and it leaves
//! when its object is deleted, or being deleted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use fleet_core::model::inventory::{FoundCluster, Inventory, SecretRef};

/// A `Cluster` object as the agent needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// [`fleet_core::api::cluster_api::control_plane_initialized`].
    pub initialized: bool,
    /// It has a deletion timestamp: Cluster API is taking it down.
    pub deleting: bool,
    /// `status.phase`, to say what a cluster is waited for.
    pub phase: Option<String>,
}

/// A Cluster not (yet) in the fleet, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// `<namespace>/<name>`.
    pub cluster: String,
    pub reason: String,
}

/// The fleet's clusters from Cluster API, and the ones waited for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inventory: Inventory,
    pub waiting: Vec<Waiting>,
}

impl Snapshot {
    /// The clusters in it, by (namespace, name).
    pub fn members(&self) -> BTreeSet<(String, String)> {
        self.inventory
            .clusters
            .iter()
            .map(|c| (c.namespace.clone(), c.name.clone()))
            .collect()
    }
}

/// Decides the fleet's Cluster API clusters from the `clusters` seen, the kubeconfig
/// `secrets` that exist, and the clusters `already` in the fleet.
pub fn decide(
    clusters: &[Observed],
    secrets: &BTreeSet<SecretRef>,
    already: &BTreeSet<(String, String)>,
) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for cluster in clusters {
        if cluster.deleting {
            continue;
        }
        let found = FoundCluster {
            namespace: cluster.namespace.clone(),
            name: cluster.name.clone(),
            labels: cluster.labels.clone(),
        };
        let key = (cluster.namespace.clone(), cluster.name.clone());
        let kept = already.contains(&key);
        let secret = found.secret();
        let waiting = if kept {
            None
        } else if !cluster.initialized {
            let phase = cluster.phase.as_deref().unwrap_or("no phase yet");
            Some(format!("control plane not initialised yet ({phase})"))
        } else if !secrets.contains(&secret) {
            Some(format!("no kubeconfig yet ({secret}, key value)"))
        } else {
            None
        };
        match waiting {
            Some(reason) => snapshot.waiting.push(Waiting {
                cluster: format!("{}/{}", cluster.namespace, cluster.name),
                reason,
            }),
            None => snapshot.inventory.clusters.push(found),
        }
    }
    snapshot.inventory.clusters.sort();
    snapshot.waiting.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(name: &str, initialized: bool) -> Observed {
        Observed {
            namespace: "capi".into(),
            name: name.into(),
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
            initialized,
            deleting: false,
            phase: Some("Provisioning".into()),
        }
    }

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            namespace: "capi".into(),
            name: format!("{name}-kubeconfig"),
        }
    }

    fn names(s: &Snapshot) -> Vec<&str> {
        s.inventory
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_cluster_joins_once_initialised_with_its_kubeconfig_and_is_waited_for_before() {
        let secrets = BTreeSet::from([secret("up"), secret("early")]);
        let clusters = [
            observed("up", true),
            observed("early", false),
            observed("no-secret", true),
        ];
        let s = decide(&clusters, &secrets, &BTreeSet::new());
        assert_eq!(names(&s), ["up"]);
        assert_eq!(s.inventory.clusters[0].labels["env"], "prod");
        let waiting: Vec<(&str, &str)> = s
            .waiting
            .iter()
            .map(|w| (w.cluster.as_str(), w.reason.as_str()))
            .collect();
        assert_eq!(
            waiting,
            [
                (
                    "capi/early",
                    "control plane not initialised yet (Provisioning)"
                ),
                (
                    "capi/no-secret",
                    "no kubeconfig yet (Secret capi/no-secret-kubeconfig, key value)"
                ),
            ]
        );
    }

    #[test]
    fn a_cluster_in_the_fleet_stays_while_its_object_exists_and_leaves_when_deleted() {
        let already = BTreeSet::from([("capi".to_string(), "up".to_string())]);
        // Upgrading (not ready) and its Secret being replaced: still in the fleet.
        let s = decide(&[observed("up", false)], &BTreeSet::new(), &already);
        assert_eq!(names(&s), ["up"]);
        let mut deleting = observed("up", true);
        deleting.deleting = true;
        let s = decide(&[deleting], &BTreeSet::from([secret("up")]), &already);
        assert!(names(&s).is_empty());
        assert!(decide(&[], &BTreeSet::new(), &already)
            .inventory
            .clusters
            .is_empty());
    }

    #[test]
    fn relabelling_a_cluster_changes_the_inventory() {
        let secrets = BTreeSet::from([secret("up")]);
        let a = decide(&[observed("up", true)], &secrets, &BTreeSet::new());
        let mut relabelled = observed("up", true);
        relabelled.labels.insert("env".into(), "dev".into());
        let b = decide(&[relabelled], &secrets, &a.members());
        assert_ne!(a.inventory.to_bytes(), b.inventory.to_bytes());
        assert_eq!(b.inventory.clusters[0].labels["env"], "dev");
    }
}
