//! Which live objects a cluster entry owns. The inventory labels name the fleet and the
//! `Cluster` entry that applied an object; an entry prunes only what names it, so two
//! entries that reach one API server, or two fleets that share a cluster, never delete
//! each other's objects, and an object that another fleet or entry holds is not taken over.

use crate::api::LABEL_CLUSTER;

use super::live::LiveObject;

/// What one cluster entry of one fleet owns.
#[derive(Clone, Copy, Debug)]
pub struct Inventory<'a> {
    pub fleet: &'a str,
    /// The fleet's earlier names (a rename in `fleet.yaml`): their objects are this fleet's
    /// to relabel or prune, so a rename leaves nothing behind.
    pub former: &'a [String],
    pub cluster: &'a str,
}

/// Whose a live object is, as the inventory labels say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// This entry's: reconciled, and pruned once nothing renders it.
    Own,
    /// This fleet's, applied before objects named their cluster entry: taken over when
    /// desired (the apply adds the entry's label), never pruned, since another entry of
    /// the fleet that reaches the same cluster may be the one that wants it.
    Unclaimed,
    /// Another fleet's, or another entry's of this fleet.
    Foreign(Holder),
}

/// Who holds an object that is not ours, as its labels say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub fleet: Option<String>,
    pub cluster: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".to_string());
        write!(
            f,
            "fleet {}, cluster entry {}",
            or_unknown(&self.fleet),
            or_unknown(&self.cluster)
        )
    }
}

impl Inventory<'_> {
    pub fn of(&self, object: &LiveObject) -> Ownership {
        let fleet = object.fleet();
        let cluster = object.label(LABEL_CLUSTER);
        let ours =
            fleet == Some(self.fleet) || fleet.is_some_and(|f| self.former.iter().any(|n| n == f));
        match (ours, cluster) {
            (true, Some(c)) if c == self.cluster => Ownership::Own,
            (true, None) => Ownership::Unclaimed,
            _ => Ownership::Foreign(Holder {
                fleet: fleet.map(str::to_string),
                cluster: cluster.map(str::to_string),
            }),
        }
    }

    pub fn owns(&self, object: &LiveObject) -> bool {
        self.of(object) == Ownership::Own
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(labels: serde_json::Value) -> LiveObject {
        LiveObject::from_json(json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {"name": "r", "namespace": "n", "labels": labels}
        }))
        .unwrap()
    }

    #[test]
    fn an_entry_owns_only_what_names_it_and_its_fleet_or_a_former_name() {
        let former = ["old".to_string()];
        let inventory = Inventory {
            fleet: "main",
            former: &former,
            cluster: "c1",
        };
        let cases = [
            (
                json!({"fleet.hops.ops.com.ai/fleet": "main", "fleet.hops.ops.com.ai/cluster": "c1"}),
                Ownership::Own,
            ),
            (
                json!({"fleet.hops.ops.com.ai/fleet": "old", "fleet.hops.ops.com.ai/cluster": "c1"}),
                Ownership::Own,
            ),
            (
                json!({"fleet.hops.ops.com.ai/fleet": "main"}),
                Ownership::Unclaimed,
            ),
            (
                json!({"fleet.hops.ops.com.ai/fleet": "old"}),
                Ownership::Unclaimed,
            ),
            (
                json!({"fleet.hops.ops.com.ai/fleet": "main", "fleet.hops.ops.com.ai/cluster": "c2"}),
                Ownership::Foreign(Holder {
                    fleet: Some("main".into()),
                    cluster: Some("c2".into()),
                }),
            ),
            (
                json!({"fleet.hops.ops.com.ai/fleet": "other", "fleet.hops.ops.com.ai/cluster": "c1"}),
                Ownership::Foreign(Holder {
                    fleet: Some("other".into()),
                    cluster: Some("c1".into()),
                }),
            ),
            (
                json!({}),
                Ownership::Foreign(Holder {
                    fleet: None,
                    cluster: None,
                }),
            ),
        ];
        for (labels, expected) in cases {
            assert_eq!(inventory.of(&object(labels.clone())), expected, "{labels}");
        }
    }
}
