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

/// The simulator as a child process (`psql-fleet sim --clusters <n> --ready-after 100ms`,
/// with `--out <dir>/out --state-file <dir>/state.json`), for the tests of the simulator's
/// own process (a SIGKILL, its state file); killed with SIGKILL when dropped.
pub struct SimProcess(std::process::Child);

impl SimProcess {
    pub fn start(dir: &Path, clusters: usize) -> SimProcess {
        let child = std::process::Command::new(crate::binary())
            .args(["sim", "--clusters", &clusters.to_string()])
            .args(["--ready-after", "100ms", "--out"])
            .arg(dir.join("out"))
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        SimProcess(child)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One simulated cluster (Releases ready at once), its name, and a client of it.
pub async fn one_cluster() -> (tempfile::TempDir, SimHandle, String, kube::Client) {
    let (dir, handle) = start(SimConfig {
        clusters: 1,
        ..SimConfig::default()
    })
    .await;
    let name = handle.cluster_names[0].clone();
    let client = client(&handle, &name).await;
    (dir, handle, name, client)
}
