//! The kubeconfigs Cluster API wrote for the fleet's clusters, held in memory as the
//! Secrets' watch last delivered them: never written to disk, never logged (the Debug form
//! names the Secrets only). A worker reads its cluster's bytes when it connects and is told
//! of every change, as the credentials directory's watch tells of a rotated file.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::cluster::credentials::Changes;
use fleet_core::model::inventory::SecretRef;

/// The readers' side.
#[derive(Clone)]
pub struct Kubeconfigs {
    by_secret: Arc<RwLock<BTreeMap<SecretRef, Arc<[u8]>>>>,
    changes: Changes,
}

/// The watch's side.
pub struct Writer {
    by_secret: Arc<RwLock<BTreeMap<SecretRef, Arc<[u8]>>>>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Kubeconfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .by_secret
            .read()
            .map(|m| m.keys().map(ToString::to_string).collect())
            .unwrap_or_default();
        f.debug_struct("Kubeconfigs")
            .field("secrets", &names)
            .finish()
    }
}

/// An empty store.
pub fn store() -> (Kubeconfigs, Writer) {
    let by_secret = Arc::new(RwLock::new(BTreeMap::new()));
    let (tx, rx) = watch::channel(0u64);
    (
        Kubeconfigs {
            by_secret: by_secret.clone(),
            changes: Changes::from_receiver(rx),
        },
        Writer {
            by_secret,
            changes: tx,
        },
    )
}

impl Kubeconfigs {
    /// The kubeconfig in `secret`, if it was seen.
    pub fn get(&self, secret: &SecretRef) -> Option<Arc<[u8]>> {
        self.by_secret.read().ok()?.get(secret).cloned()
    }

    /// A fingerprint of the bytes in `secret`, to notice rotation.
    pub fn fingerprint(&self, secret: &SecretRef) -> Option<[u8; 32]> {
        self.get(secret).map(|b| Sha256::digest(&b).into())
    }

    /// Where the workers learn that some kubeconfig changed.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

impl Writer {
    /// Replaces every kubeconfig with `now`; the readers are told when anything changed.
    pub fn replace(&self, now: BTreeMap<SecretRef, Arc<[u8]>>) {
        let Ok(mut held) = self.by_secret.write() else {
            return;
        };
        if *held != now {
            *held = now;
            drop(held);
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_a_rotated_kubeconfig_and_are_told_and_debug_shows_no_bytes() {
        let (readers, writer) = store();
        let secret = SecretRef {
            namespace: "capi".into(),
            name: "w1-kubeconfig".into(),
        };
        let mut told = readers.changes().subscribe();
        writer.replace(BTreeMap::from([(
            secret.clone(),
            Arc::from(&b"token: one"[..]),
        )]));
        assert!(told.has_changed().unwrap());
        told.mark_unchanged();
        let before = readers.fingerprint(&secret);
        writer.replace(BTreeMap::from([(
            secret.clone(),
            Arc::from(&b"token: one"[..]),
        )]));
        assert!(!told.has_changed().unwrap(), "the same bytes are no change");
        writer.replace(BTreeMap::from([(
            secret.clone(),
            Arc::from(&b"token: two"[..]),
        )]));
        assert!(told.has_changed().unwrap());
        assert_ne!(readers.fingerprint(&secret), before);
        let shown = format!("{readers:?}");
        assert!(shown.contains("Secret capi/w1-kubeconfig"), "{shown}");
        assert!(!shown.contains("token"), "{shown}");
    }
}
