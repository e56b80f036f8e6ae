//! [`Sim`]: what the server shares between connections. The fleet's clusters, each a
//! [`ClusterSlot`] (identity, token, injected [`Faults`]) whose state and controllers are
//! created on first use; the admin token, the CA, the audit log and the request counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::cluster::{ClusterState, Shared};
use crate::{audit, controllers, requests};

/// Per-cluster faults injected through the admin API.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    #[serde(default)]
    pub down: bool,
    #[serde(default)]
    pub latency_ms: u64,
    /// Fraction (0.0-1.0) of requests answered with 500 InternalError.
    #[serde(default)]
    pub error_rate: f64,
}

/// A cluster's identity and credentials; its state is created on first request.
pub struct ClusterSlot {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub token: RwLock<String>,
    pub faults: RwLock<Faults>,
    /// Set on first use, or by [`crate::server::start`] for a cluster restored from a
    /// state file.
    pub(crate) state: OnceLock<Arc<ClusterState>>,
}

impl ClusterSlot {
    pub fn token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Everything the server shares between connections.
pub struct Sim {
    pub shared: Arc<Shared>,
    pub clusters: Vec<ClusterSlot>,
    pub index: HashMap<String, usize>,
    pub admin_token: String,
    pub ca_pem: String,
    pub audit: audit::AuditLog,
    /// Requests served by verb, reads included (the audit log has only the writes).
    pub requests: requests::RequestCounts,
    /// The URL clients use, known once the listener is bound.
    pub base_url: OnceLock<String>,
    /// Serialises kubeconfig rewrites (token rotation).
    pub files: Mutex<()>,
}

impl Sim {
    pub fn slot(&self, name: &str) -> Option<&ClusterSlot> {
        self.index.get(name).map(|i| &self.clusters[*i])
    }

    /// The cluster's state, created (with its controllers) on first use.
    pub fn state(&self, slot: &ClusterSlot) -> Arc<ClusterState> {
        slot.state
            .get_or_init(|| {
                let state = Arc::new(ClusterState::new(&slot.name, &self.shared));
                controllers::spawn(self.shared.clone(), state.clone());
                state
            })
            .clone()
    }

    /// The state if the cluster was ever used.
    pub fn existing_state(&self, slot: &ClusterSlot) -> Option<Arc<ClusterState>> {
        slot.state.get().cloned()
    }
}
