//! Fleet directories for the benchmark: the simulator's Cluster files plus generated claims,
//! one per cluster in `default`, or several per cluster in namespaces of their own.

use std::path::Path;

use anyhow::{Context, Result};
use fleet_core::testing::{claim, claims_file, ClaimsFile};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use test_support::files::write_doc;

use crate::procs::Sim;
use crate::simapi;

/// The namespace of claim `i` of a cluster holding `per` claims.
pub fn claim_namespace(i: usize, per: usize) -> String {
    if per == 1 {
        "default".into()
    } else {
        format!("team{i}")
    }
}

/// The `per` claims of `cluster`, in one file. Several claims on a cluster install their
/// charts apart, or they would share (and fight over) one Helm release.
fn claims(cluster: &str, per: usize) -> ClaimsFile {
    let claims = (0..per)
        .map(|i| {
            let claim = claim(&format!("db{i}"), cluster).namespace(&claim_namespace(i, per));
            if per == 1 {
                claim
            } else {
                claim.install_namespace(&claim_namespace(i, per))
            }
        })
        .collect();
    claims_file(&format!("claims/{cluster}.yaml"), claims)
}

/// Writes `clusters/` (the given Cluster documents, as the simulator writes them) and
/// `claims/` under `dir`.
pub fn write(dir: &Path, clusters: &[(String, String)], per: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("clusters"))?;
    for (name, doc) in clusters {
        std::fs::write(dir.join(format!("clusters/{name}.yaml")), doc)?;
        write_doc(dir, &claims(name, per));
    }
    Ok(())
}

/// A fleet over the simulator's clusters.
pub fn for_sim(dir: &Path, sim: &Sim, per: usize) -> Result<()> {
    let clusters = sim
        .names
        .iter()
        .map(|n| {
            let doc = std::fs::read_to_string(sim.dir.join(format!("clusters/{n}.yaml")))?;
            Ok((n.clone(), doc))
        })
        .collect::<Result<Vec<_>>>()?;
    write(dir, &clusters, per)
}

/// A fleet of `n` clusters that need no simulator (for render and plan).
pub fn offline(dir: &Path, n: usize, per: usize) -> Result<()> {
    use kube_sim::kubeconfig::{cluster_file, cluster_name, labels};
    let clusters: Vec<(String, String)> = (0..n)
        .map(|i| {
            let name = cluster_name("c-", i, n);
            let doc = cluster_file(&name, &labels(0, i));
            (name, doc)
        })
        .collect();
    write(dir, &clusters, per)
}

/// The tenant namespaces a real cluster would already have for several claims each.
pub async fn create_namespaces(sim: &Sim, per: usize) -> Result<()> {
    if per == 1 {
        return Ok(());
    }
    let jobs = sim.names.iter().map(|cluster| async move {
        let client = simapi::client(&sim.kubeconfig(cluster)).await?;
        let api = Api::<Namespace>::all(client);
        for i in 0..per {
            let ns: Namespace = serde_json::from_value(
                serde_json::json!({"metadata": {"name": claim_namespace(i, per)}}),
            )?;
            api.create(&PostParams::default(), &ns)
                .await
                .with_context(|| format!("create namespace on {cluster}"))?;
        }
        anyhow::Ok(())
    });
    let results: Vec<Result<()>> = futures::stream::iter(jobs)
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}
