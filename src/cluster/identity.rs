//! Which cluster entries reach which API server. Two entries for one cluster (a copied
//! cluster file, two kubeconfig files for one cluster, which no file check can catch)
//! would both reconcile it. The cluster's own identity, the UID of its `kube-system`
//! namespace (what Argo CD and Open Cluster Management use), tells them apart at run time:
//! the entry that sorts first keeps the cluster, and the others are refused, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::GetParams;
use kube::Resource;

use super::client::ClusterClient;

/// The entries connected to each cluster, by cluster identity.
#[derive(Clone, Default)]
pub struct Registry {
    by_uid: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    /// Moves on every entry and leave, after the map changed: an answer read from the map
    /// stands until it moves. Every pass asks, and at ten thousand clusters the lookup
    /// under one lock was a tenth of a settled pass.
    moves: Arc<AtomicU64>,
}

/// An entry's place in the registry, given up when dropped (the session ended).
pub struct Entered {
    registry: Registry,
    uid: String,
    entry: String,
    /// The keeper last read, and the registry's move it was read at.
    known: Option<(u64, Option<String>)>,
}

impl Registry {
    pub fn enter(&self, uid: &str, entry: &str) -> Entered {
        if let Ok(mut map) = self.by_uid.lock() {
            map.entry(uid.to_string())
                .or_default()
                .insert(entry.to_string());
            self.moves.fetch_add(1, Ordering::Release);
        }
        Entered {
            registry: self.clone(),
            uid: uid.to_string(),
            entry: entry.to_string(),
            known: None,
        }
    }
}

impl Entered {
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The entry that keeps this cluster when it is not this one.
    pub fn refused_by(&mut self) -> Option<String> {
        // Read before the map: a move in between is read again next time.
        let now = self.registry.moves.load(Ordering::Acquire);
        if let Some((at, keeper)) = &self.known {
            if *at == now {
                return keeper.clone();
            }
        }
        let keeper = {
            let map = self.registry.by_uid.lock().ok()?;
            map.get(&self.uid)
                .and_then(|entries| keeper(entries, &self.entry))
                .map(str::to_string)
        };
        self.known = Some((now, keeper.clone()));
        keeper
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.by_uid.lock() {
            if let Some(entries) = map.get_mut(&self.uid) {
                entries.remove(&self.entry);
                if entries.is_empty() {
                    map.remove(&self.uid);
                }
            }
            self.registry.moves.fetch_add(1, Ordering::Release);
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
    }
}
