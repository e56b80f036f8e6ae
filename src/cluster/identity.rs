//! Which cluster entries reach which API server. Two entries for one cluster (a copied
//! cluster file, two kubeconfig files for one cluster, which no file check can catch)
//! would both reconcile it. The cluster's own identity, the UID of its `kube-system`
//! namespace (what Argo CD and Open Cluster Management use), tells them apart at run time:
//! the entry that sorts first keeps the cluster, and the others are refused, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::GetParams;
use kube::Resource;

use super::client::ClusterClient;

/// The entries connected to each cluster, by cluster identity.
#[derive(Clone, Default)]
pub struct Registry {
    by_uid: Arc<Mutex<BTreeMap<String, Slot>>>,
}

/// The entries reaching one cluster. Each entry holds its cluster's slot, so that the
/// question every pass asks (is this entry refused?) locks only the entries of its own
/// cluster, never the map of all clusters: at ten thousand clusters, a lookup by UID in
/// the whole map on each pass cost more than the answer was worth.
type Slot = Arc<Mutex<BTreeSet<String>>>;

/// An entry's place in the registry, given up when dropped (the session ended).
pub struct Entered {
    registry: Registry,
    slot: Slot,
    uid: String,
    entry: String,
}

impl Registry {
    pub fn enter(&self, uid: &str, entry: &str) -> Entered {
        let slot = match self.by_uid.lock() {
            Ok(mut map) => {
                let slot = map.entry(uid.to_string()).or_default().clone();
                // Under the map's lock: a leave that empties the slot removes it under
                // the same lock, so an entry never joins a slot that left the map.
                if let Ok(mut entries) = slot.lock() {
                    entries.insert(entry.to_string());
                }
                slot
            }
            Err(_) => Slot::default(),
        };
        Entered {
            registry: self.clone(),
            slot,
            uid: uid.to_string(),
            entry: entry.to_string(),
        }
    }
}

impl Entered {
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The entry that keeps this cluster when it is not this one.
    pub fn refused_by(&mut self) -> Option<String> {
        let entries = self.slot.lock().ok()?;
        keeper(&entries, &self.entry).map(str::to_string)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.by_uid.lock() {
            let emptied = match self.slot.lock() {
                Ok(mut entries) => {
                    entries.remove(&self.entry);
                    entries.is_empty()
                }
                Err(_) => false,
            };
            if emptied
                && map
                    .get(&self.uid)
                    .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                map.remove(&self.uid);
            }
        }
    }
}

/// Of the entries reaching one cluster, the one that keeps it, when it is not `me`: the
/// first by name, so the choice does not depend on which connected first.
fn keeper<'a>(entries: &'a BTreeSet<String>, me: &str) -> Option<&'a str> {
    entries
        .first()
        .map(String::as_str)
        .filter(|first| *first != me)
}

/// The cluster's identity; `None` when it cannot be read (no permission to read
/// namespaces, or no answer), in which case nothing is refused on its account.
pub async fn read(client: &ClusterClient, timeout: Duration) -> Option<String> {
    let read = async {
        let request = kube::core::Request::new(Namespace::url_path(&(), None))
            .get("kube-system", &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        client.request::<Namespace>(request).await
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(ns)) => ns.metadata.uid,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read the kube-system namespace; cluster identity unknown");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_entry_by_name_keeps_a_cluster_whichever_connected_first() {
        let registry = Registry::default();
        let mut copy = registry.enter("uid-1", "sim-003");
        assert_eq!(copy.refused_by(), None, "alone, it keeps the cluster");
        let mut original = registry.enter("uid-1", "sim-000");
        assert_eq!(copy.refused_by().as_deref(), Some("sim-000"));
        assert_eq!(original.refused_by(), None);
        let mut other = registry.enter("uid-2", "sim-001");
        assert_eq!(
            other.refused_by(),
            None,
            "another cluster is another matter"
        );
        drop(original);
        assert_eq!(copy.refused_by(), None, "once the first entry is gone");
        drop((copy, other));
        assert!(
            registry.by_uid.lock().unwrap().is_empty(),
            "a cluster no entry reaches is forgotten"
        );
        let mut again = registry.enter("uid-1", "sim-003");
        let mut first = registry.enter("uid-1", "sim-000");
        assert_eq!(again.refused_by().as_deref(), Some("sim-000"));
        assert_eq!(first.refused_by(), None);
    }
}
