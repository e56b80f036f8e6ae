//! Talking to the simulator: its admin API (request counts, audit log, hand edits) through
//! the same client `psql-fleet sim fault` uses, and its clusters through kube-rs clients
//! built from the kubeconfigs it wrote.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use psql_fleet::cli::sim_fault::{call, FaultAction, FaultArgs};
use serde_json::Value;

use crate::procs::Sim;

pub use kube_sim::requests::WRITE_VERBS;

pub async fn admin(sim: &Sim, method: &str, path: &str, body: &Value) -> Result<Value> {
    let args = FaultArgs {
        admin: sim.admin_url.clone(),
        dir: sim.dir.clone(),
        action: FaultAction::Requests,
    };
    let (code, text) = call(&args, method, path, body)
        .await
        .map_err(|e| anyhow!("admin API {path}: {e}"))?;
    if code >= 300 {
        bail!("admin API {path}: {code} {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("admin API {path}: not JSON"))
}

/// Requests served so far, by verb.
pub async fn requests(sim: &Sim) -> Result<BTreeMap<String, u64>> {
    let v = admin(sim, "GET", "/requests", &Value::Null).await?;
    serde_json::from_value(v["requests"].clone()).context("request counts")
}

/// Mutating requests recorded in the audit log so far.
pub async fn audit_len(sim: &Sim) -> Result<usize> {
    let v = admin(sim, "GET", "/audit", &Value::Null).await?;
    Ok(v["entries"].as_array().map_or(0, Vec::len))
}

pub fn delta(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub fn writes(counts: &BTreeMap<String, u64>) -> u64 {
    WRITE_VERBS.iter().filter_map(|v| counts.get(*v)).sum()
}

pub fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// "get 12, list 4, ..." in the order the API server names verbs.
pub fn by_verb(counts: &BTreeMap<String, u64>) -> String {
    let order = kube_sim::requests::VERBS;
    let mut parts: Vec<String> = order
        .iter()
        .filter_map(|v| counts.get(*v).map(|n| format!("{v} {n}")))
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    parts.join(", ")
}

/// A client of one simulated cluster, as a user's tool would build it from the kubeconfig.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
