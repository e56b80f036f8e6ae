//! `psql-fleet sim`: many Kubernetes-API-compatible clusters on one loopback HTTPS
//! listener (`https://127.0.0.1:PORT/clusters/<name>`), honest enough for kubectl and
//! kube-rs: discovery, OpenAPI, real verb semantics, watches, server-side apply, simulated
//! provider-helm and Crossplane Usage controllers, fault injection and an audit log.
//!
//! [`start`] is the library entry point; `psql-fleet sim` and `psql-fleet demo` wrap it.
//! It knows nothing of the agent: only the API types of `fleet-core`, to serve their CRDs.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "a failed test panics"
    )
)]

pub mod admin;
pub mod audit;
pub mod catalogue;
pub mod cluster;
pub mod controllers;
pub mod crds;
pub mod discovery;
pub mod events;
pub mod kubeconfig;
pub mod objects;
pub mod openapi;
pub mod persist;
pub mod protobuf;
pub mod requests;
pub mod router;
pub mod selector;
pub mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;
pub mod typed;
pub mod usage;
pub mod validation;
pub mod verbs;
pub mod watch;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use cluster::{ClusterState, Shared};

pub use server::{start, SimHandle};

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub clusters: usize,
    pub out: PathBuf,
    pub listen: SocketAddr,
    /// How long the simulated provider-helm takes to install or upgrade a Release.
    pub ready_after: Duration,
    pub seed: u64,
    pub name_prefix: String,
    /// Change events kept per cluster; a watch from an older resourceVersion gets 410.
    pub event_window: usize,
    pub bookmark_interval: Duration,
    pub catalogue: catalogue::Catalogue,
    pub audit_log: Option<PathBuf>,
    /// Where the state a restarted API server keeps is saved and restored from
    /// ([`persist`]); `None` keeps everything in memory only.
    pub state_file: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            clusters: 1,
            out: PathBuf::from("sim-out"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_after: Duration::from_secs(2),
            seed: 0,
            name_prefix: "sim-".into(),
            event_window: 1000,
            bookmark_interval: Duration::from_secs(15),
            catalogue: catalogue::Catalogue::default(),
            audit_log: None,
            state_file: None,
        }
    }
}

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
    state: OnceLock<Arc<ClusterState>>,
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
