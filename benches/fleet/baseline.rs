//! The baseline: `kubectl-loop.sh`, one cluster after another with kubectl (or `parallel`
//! clusters at a time), against a fresh simulator of the same size, timed as a whole.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::fleet;
use crate::procs::Sim;
use crate::simapi;

pub struct Loop {
    pub clusters: usize,
    /// Clusters worked on at once (`xargs -P`); 1 is the sequential loop.
    pub parallel: usize,
    pub elapsed: Duration,
    pub requests: std::collections::BTreeMap<String, u64>,
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fleet/kubectl-loop.sh");

pub async fn run(bin: &Path, work: &Path, clusters: usize, parallel: usize) -> Result<Loop> {
    let sim = Sim::start(bin, clusters, Duration::ZERO, &work.join("sim"))?;
    let fleet_dir = work.join("fleet");
    fleet::for_sim(&fleet_dir, &sim, 1)?;
    let before = simapi::requests(&sim).await?;
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT)
        .arg(bin)
        .arg(&fleet_dir)
        .arg(&sim.dir)
        .arg(work.join("manifests"))
        .args(&sim.names)
        // A fresh discovery cache, as on a new machine; the clusters share one host:port,
        // so kubectl reuses it after the first cluster (in the loop's favour).
        .env("KUBECACHEDIR", work.join("kube-cache"))
        .env("LOOP_PARALLEL", parallel.to_string());
    let start = Instant::now();
    let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("the kubectl loop failed: {status}");
    }
    // Every cluster must end with its Usage applied, as the agent's runs do.
    let audit = simapi::admin(&sim, "GET", "/audit", &Value::Null).await?;
    let usages = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["verb"] == "apply"
                && e["resource"] == "usages.protection.crossplane.io"
                && e["code"].as_u64().is_some_and(|c| c < 300)
        })
        .count();
    if usages < clusters {
        bail!("the kubectl loop applied {usages} Usages for {clusters} clusters");
    }
    let requests = simapi::delta(&simapi::requests(&sim).await?, &before);
    Ok(Loop {
        clusters,
        parallel,
        elapsed,
        requests,
    })
}
