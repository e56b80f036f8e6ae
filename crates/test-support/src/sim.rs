//! A simulator for one test, and kube-rs clients of its clusters built from the kubeconfigs
//! it wrote (the way a user's client would reach them).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_sim::{self as sim, SimConfig, SimHandle};

/// `config` started with its kubeconfigs in a fresh directory, which lives as long as the
/// returned `TempDir`.
pub async fn start(config: SimConfig) -> (tempfile::TempDir, SimHandle) {
    let dir = tempfile::tempdir().unwrap();
    let handle = sim::start(SimConfig {
        out: dir.path().into(),
        ..config
    })
    .await
    .unwrap();
    (dir, handle)
}

/// The client configuration of the kubeconfig at `path`, as it is on disk now.
pub async fn config(path: &Path) -> kube::Config {
    let kc = Kubeconfig::read_from(path).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap()
}

/// A client of one simulated cluster, from its kubeconfig as written now.
pub async fn client(handle: &SimHandle, cluster: &str) -> kube::Client {
    kube::Client::try_from(config(&handle.kubeconfig_path(cluster)).await).unwrap()
}
