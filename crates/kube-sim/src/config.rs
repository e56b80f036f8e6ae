//! [`SimConfig`]: how to run the simulator (how many clusters, where to listen and write,
//! how the simulated controllers and watches behave, what to persist).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::catalogue;

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
    /// Change events kept per cluster at most; a watch from an older resourceVersion
    /// gets 410. kube-apiserver's watch cache holds up to 100 Ki events per resource.
    pub event_window: usize,
    /// How long a change event is kept; the API server's etcd is compacted every 5 minutes.
    pub event_max_age: Duration,
    /// How often a watch that asked for bookmarks gets one: kube-apiserver's watch cache
    /// sends them about once a minute (`defaultBookmarkFrequency` in the cacher), and once
    /// more shortly before the watch's timeout.
    pub bookmark_interval: Duration,
    pub catalogue: catalogue::Catalogue,
    pub audit_log: Option<PathBuf>,
    /// Where the state a restarted API server keeps is saved and restored from
    /// ([`crate::persist`]); `None` keeps everything in memory only.
    pub state_file: Option<PathBuf>,
    /// CRDs (`releases.helm.m.crossplane.io`, `usages.protection.crossplane.io`) the
    /// clusters start without: their kinds are not served until the CRD is installed
    /// (through the admin API, or by creating the CRD object).
    pub without_crds: Vec<String>,
    /// Clusters that are Cluster API management clusters: they serve
    /// `clusters.cluster.x-k8s.io` from the start (every other cluster only once the CRD
    /// is installed).
    pub cluster_api: Vec<String>,
}

impl SimConfig {
    /// The event window of each cluster's store.
    pub fn window(&self) -> crate::store::Window {
        crate::store::Window {
            events: self.event_window,
            age: self.event_max_age,
        }
    }
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
            event_window: 100 * 1024,
            event_max_age: Duration::from_secs(300),
            bookmark_interval: Duration::from_secs(60),
            catalogue: catalogue::Catalogue::default(),
            audit_log: None,
            state_file: None,
            without_crds: Vec::new(),
            cluster_api: Vec::new(),
        }
    }
}
