//! Many watchers on the simulator: `per` concurrent watches (each its own client and
//! connection) on each of `sample` clusters; a write on each cluster must reach every one
//! of its watchers promptly, and a plain request to another cluster must not wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::mpsc;

use crate::procs::Sim;
use crate::stats::Percentiles;

pub struct WatchFigures {
    pub clusters: usize,
    pub per_cluster: usize,
    pub opened_in: Duration,
    pub rounds: usize,
    pub delivered: usize,
    pub expected: usize,
    /// From the writes being sent to each watcher receiving its event.
    pub latency: Percentiles,
    /// GET /version on a cluster without watchers, during the rounds.
    pub probe: Percentiles,
    pub sim_rss_mib: f64,
}

async fn config(sim: &Sim, cluster: &str) -> Result<kube::Config> {
    let kc = Kubeconfig::read_from(sim.kubeconfig(cluster))?;
    Ok(kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)
}

const PREFIX: &str = "bench-watch-";

pub async fn run(sim: &Sim, sample: usize, per: usize, rounds: usize) -> Result<WatchFigures> {
    let n = sim.names.len();
    let sample = sample.min(n.saturating_sub(1)).max(1);
    let clusters: Vec<String> = (0..sample)
        .map(|i| sim.names[i * n / sample].clone())
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let opened = Instant::now();
    let mut writers = Vec::new();
    let mut tasks = Vec::new();
    for cluster in &clusters {
        let cfg = config(sim, cluster).await?;
        let writer = kube::Client::try_from(cfg.clone())?;
        let rv = Api::<Namespace>::all(writer.clone())
            .list(&ListParams::default())
            .await
            .with_context(|| format!("list namespaces on {cluster}"))?
            .metadata
            .resource_version
            .unwrap_or_default();
        writers.push(writer);
        for _ in 0..per {
            let api = Api::<Namespace>::all(kube::Client::try_from(cfg.clone())?);
            let stream = api
                .watch(&WatchParams::default(), &rv)
                .await
                .with_context(|| format!("watch namespaces on {cluster}"))?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    if let Ok(WatchEvent::Added(ns)) = event {
                        let round = ns
                            .metadata
                            .name
                            .as_deref()
                            .and_then(|n| n.strip_prefix(PREFIX))
                            .and_then(|r| r.parse().ok());
                        if let Some(round) = round {
                            let _ = tx.send((round, Instant::now()));
                        }
                    }
                }
            }));
        }
    }
    let opened_in = opened.elapsed();
    let sim_rss_mib = sim.proc.usage()?.rss_mib();

    let probe_cluster = sim.names[n / sample / 2].clone();
    let probe_client = kube::Client::try_from(config(sim, &probe_cluster).await?)?;
    let stop = Arc::new(AtomicBool::new(false));
    let probing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if probe_client.apiserver_version().await.is_ok() {
                    samples.push(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    let mut latencies = Vec::new();
    let expected_per_round = clusters.len() * per;
    for round in 0..rounds {
        let sent = Instant::now();
        let creates = writers.iter().map(|w| {
            let ns: Namespace = serde_json::from_value(
                serde_json::json!({"metadata": {"name": format!("{PREFIX}{round}")}}),
            )
            .expect("a namespace");
            let api = Api::<Namespace>::all(w.clone());
            async move { api.create(&PostParams::default(), &ns).await }
        });
        for r in futures::future::join_all(creates).await {
            r.context("create a namespace")?;
        }
        let deadline = sent + Duration::from_secs(30);
        let mut got = 0;
        while got < expected_per_round {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((r, at))) if r == round => {
                    latencies.push(at - sent);
                    got += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let probe = probing.await?;
    for t in tasks {
        t.abort();
    }
    if latencies.is_empty() {
        bail!("no watcher saw any write");
    }
    Ok(WatchFigures {
        clusters: clusters.len(),
        per_cluster: per,
        opened_in,
        rounds,
        delivered: latencies.len(),
        expected: expected_per_round * rounds,
        latency: Percentiles::of(latencies),
        probe: Percentiles::of(probe),
        sim_rss_mib,
    })
}
