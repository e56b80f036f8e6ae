//! The real `kubectl` on PATH, run against a simulated cluster's kubeconfig (tests skip
//! with a message when it is absent).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kube_sim::{SimConfig, SimHandle};

pub fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `kubectl --kubeconfig <kubeconfig> args...` (30 s at most), feeding it `stdin`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("timeout");
    cmd.arg("30")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl output")
}

/// Its stdout and stderr, as one text for assertions and failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// kubectl holding one kubeconfig, run off the async runtime (it blocks while it runs).
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let kubeconfig = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let stdin = stdin.map(String::from);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&kubeconfig, &args, stdin.as_deref())
        })
        .await
        .unwrap()
    }

    /// `kubectl apply --server-side --field-manager <manager> -f -` of `manifests`.
    pub async fn apply(&self, manager: &str, manifests: &str) -> Output {
        self.run(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                manager,
                "-f",
                "-",
            ],
            Some(manifests),
        )
        .await
    }
}

/// A simulator started with `config` and kubectl on its first cluster; `None`, after
/// printing why, when kubectl is not on PATH (the test then skips).
pub async fn on_sim(config: SimConfig) -> Option<(tempfile::TempDir, SimHandle, Kubectl)> {
    if !kubectl_available() {
        eprintln!("SKIP: kubectl is not on PATH");
        return None;
    }
    let (dir, handle) = crate::sim::start(config).await;
    let kubeconfig = handle.kubeconfig_path(&handle.cluster_names[0]);
    Some((dir, handle, Kubectl { kubeconfig }))
}
