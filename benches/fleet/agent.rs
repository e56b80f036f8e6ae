//! The agent from cold start against a fresh simulator: time until every claim is ready
//! (polling its /api/v1/status), requests by verb (the simulator's counters), peak RSS and
//! CPU of the agent process; then a steady-state window, then drift on many Releases at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, WatchEvent, WatchParams};
use psql_fleet::status::{StatusReport, Summary};
use serde_json::json;
use tokio::sync::mpsc;

use crate::fleet;
use crate::procs::{free_port, Proc, Sim, Usage};
use crate::simapi;
use crate::stats::Percentiles;

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub clusters: usize,
    pub claims_per_cluster: usize,
    pub ready_after: Duration,
    /// A steady-state window after convergence, if any.
    pub steady: Option<Duration>,
    /// How many Releases to edit at once, if any.
    pub drift: usize,
    /// How long to wait for the drift to be corrected.
    pub drift_limit: Duration,
}

impl Scenario {
    pub fn claims(&self) -> usize {
        self.clusters * self.claims_per_cluster
    }
}

pub struct Steady {
    pub window: Duration,
    pub requests: BTreeMap<String, u64>,
    pub audited_writes: usize,
    pub agent_cpu_secs: f64,
    /// Prometheus' read of `/metrics`, after the window.
    pub scrape: Scrape,
}

/// What one read of `/metrics` costs the agent, as Prometheus reads it at every interval.
pub struct Scrape {
    pub agent_cpu_secs: f64,
    pub bytes: usize,
    pub series: usize,
}

impl Steady {
    /// The agent's CPU share over the window had Prometheus scraped it every `interval`.
    pub fn share_scraped_every(&self, interval: Duration) -> f64 {
        let window = self.window.as_secs_f64();
        let scrapes = window / interval.as_secs_f64();
        100.0 * (self.agent_cpu_secs + scrapes * self.scrape.agent_cpu_secs) / window
    }
}

/// Prometheus' usual scrape interval, at which the idle figures also count the scrapes.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// Scrapes read to time one: the agent's CPU is counted in ticks of 10 ms.
const SCRAPES: u32 = 10;

async fn scrape(agent: &Proc, server: &str) -> Result<Scrape> {
    let before = agent.usage()?;
    let mut body = String::new();
    for _ in 0..SCRAPES {
        let s = server.to_string();
        body = tokio::task::spawn_blocking(move || psql_fleet::cli::status::fetch(&s, "/metrics"))
            .await?
            .context("reading /metrics")?;
    }
    let after = agent.usage()?;
    Ok(Scrape {
        agent_cpu_secs: (after.cpu_secs - before.cpu_secs) / f64::from(SCRAPES),
        bytes: body.len(),
        series: body.lines().filter(|l| !l.starts_with('#')).count(),
    })
}

pub struct Drift {
    pub edited: usize,
    pub corrected: usize,
    pub latency: Percentiles,
    /// What the agent reported for an uncorrected one, if any.
    pub note: Option<String>,
}

pub struct Outcome {
    pub scenario: Scenario,
    pub cold: Duration,
    pub cold_requests: BTreeMap<String, u64>,
    pub at_ready: Usage,
    pub steady: Option<Steady>,
    pub drift: Option<Drift>,
    pub agent_end: Usage,
    pub sim_end: Usage,
}

/// How often the harness asks the agent whether every claim is ready, through
/// `/api/v1/status/summary`: a few hundred bytes counted under the status lock, where the
/// whole status (which the harness read until 2026-12-05, every 1 s at 10,000 clusters to
/// keep its cost down) is 3.5 MB and 20 ms of the agent's CPU a read at 10,000 clusters.
/// `BENCH_STATUS_POLL_MS` sets it.
fn status_poll() -> Duration {
    let ms = std::env::var("BENCH_STATUS_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    Duration::from_millis(ms)
}

fn status(server: &str) -> Option<StatusReport> {
    let body = psql_fleet::cli::status::fetch(server, "/api/v1/status").ok()?;
    serde_json::from_str(&body).ok()
}

fn summary(server: &str) -> Option<Summary> {
    let body = psql_fleet::cli::status::fetch(server, "/api/v1/status/summary").ok()?;
    serde_json::from_str(&body).ok()
}

pub async fn run(bin: &Path, work: &Path, sc: Scenario) -> Result<Outcome> {
    let sim = Sim::start(bin, sc.clusters, sc.ready_after, &work.join("sim"))?;
    let fleet_dir = work.join("fleet");
    fleet::for_sim(&fleet_dir, &sim, sc.claims_per_cluster)?;
    fleet::create_namespaces(&sim, sc.claims_per_cluster).await?;
    let before = simapi::requests(&sim).await?;

    let port = free_port()?;
    let server = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(work.join("agent.log"))?;
    let start = Instant::now();
    let mut agent = Proc::spawn(
        "agent",
        Command::new(bin)
            .arg("run")
            .arg("--source")
            .arg(&fleet_dir)
            .arg("--credentials-dir")
            .arg(&sim.dir)
            .arg("--cache-dir")
            .arg(work.join("cache"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    let deadline = start + Duration::from_secs(300);
    let mut last_ready = 0;
    let poll = status_poll();
    loop {
        let s = server.clone();
        let summary = tokio::task::spawn_blocking(move || summary(&s)).await?;
        if let Some(summary) = summary {
            last_ready = summary.claims.ready_with_usage;
            if summary.clusters.total == sc.clusters
                && summary.claims.total == sc.claims()
                && last_ready == sc.claims()
            {
                break;
            }
        }
        agent.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "{} of {} claims ready after {:?} (agent log: {})",
                last_ready,
                sc.claims(),
                start.elapsed(),
                work.join("agent.log").display()
            );
        }
        tokio::time::sleep(poll).await;
    }
    let cold = start.elapsed();
    let at_ready = agent.usage()?;
    let cold_requests = simapi::delta(&simapi::requests(&sim).await?, &before);

    let steady = match sc.steady {
        Some(window) => {
            // Let the last watch events of the convergence land first.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (r0, a0, u0) = (
                simapi::requests(&sim).await?,
                simapi::audit_len(&sim).await?,
                agent.usage()?,
            );
            tokio::time::sleep(window).await;
            let (r1, a1, u1) = (
                simapi::requests(&sim).await?,
                simapi::audit_len(&sim).await?,
                agent.usage()?,
            );
            Some(Steady {
                window,
                requests: simapi::delta(&r1, &r0),
                audited_writes: a1.saturating_sub(a0),
                agent_cpu_secs: u1.cpu_secs - u0.cpu_secs,
                scrape: scrape(&agent, &server).await?,
            })
        }
        None => None,
    };
    let drift = if sc.drift > 0 {
        Some(drift(&sim, &server, sc).await?)
    } else {
        None
    };
    agent.check_running()?;
    let agent_end = agent.usage()?;
    let sim_end = sim.proc.usage()?;
    Ok(Outcome {
        scenario: sc,
        cold,
        cold_requests,
        at_ready,
        steady,
        drift,
        agent_end,
        sim_end,
    })
}

fn release_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "helm.m.crossplane.io".into(),
        version: "v1beta1".into(),
        api_version: "helm.m.crossplane.io/v1beta1".into(),
        kind: "Release".into(),
        plural: "releases".into(),
    };
    Api::namespaced_with(client, namespace, &ar)
}

fn chart_version(o: &DynamicObject) -> Option<String> {
    o.data["spec"]["forProvider"]["chart"]["version"]
        .as_str()
        .map(String::from)
}

fn rv(o: &DynamicObject) -> u64 {
    o.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const RELEASE: &str = "stackgres-operator";

/// Edits the chart version of `sc.drift` StackGres Releases at once as another field
/// manager, then times, through watches, until each is back at the version the fleet pins.
async fn drift(sim: &Sim, server: &str, sc: Scenario) -> Result<Drift> {
    let n = sc.drift.min(sc.claims());
    let targets: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                sim.names[i % sc.clusters].clone(),
                fleet::claim_namespace(
                    (i / sc.clusters) % sc.claims_per_cluster,
                    sc.claims_per_cluster,
                ),
            )
        })
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, String, u64, Instant)>();
    let mut desired = Vec::new();
    let mut watches = Vec::new();
    for (i, (cluster, ns)) in targets.iter().enumerate() {
        let api = release_api(simapi::client(&sim.kubeconfig(cluster)).await?, ns);
        let live = api
            .get(RELEASE)
            .await
            .with_context(|| format!("get {ns}/{RELEASE} on {cluster}"))?;
        desired.push(chart_version(&live).unwrap_or_default());
        let stream = api
            .watch(&WatchParams::default(), &rv(&live).to_string())
            .await?;
        let tx = tx.clone();
        watches.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(WatchEvent::Modified(o) | WatchEvent::Added(o)) = event {
                    if o.metadata.name.as_deref() == Some(RELEASE) {
                        let v = chart_version(&o).unwrap_or_default();
                        let _ = tx.send((i, v, rv(&o), Instant::now()));
                    }
                }
            }
        }));
    }
    let edits = targets.iter().zip(&desired).map(|((cluster, ns), want)| {
        let other = if want == "1.19.0" { "1.18.4" } else { "1.19.0" };
        let body = json!({
            "namespace": ns,
            "name": RELEASE,
            "manager": "kubectl-edit",
            "patch": {"spec": {"forProvider": {"chart": {"version": other}}}}
        });
        let path = format!("/clusters/{cluster}/edit");
        async move {
            let reply = simapi::admin(sim, "POST", &path, &body).await?;
            let edited: u64 = reply["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            anyhow::Ok((edited, Instant::now()))
        }
    });
    let edited: Vec<(u64, Instant)> = futures::future::join_all(edits)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut corrected: Vec<Option<Duration>> = vec![None; n];
    let deadline = Instant::now() + sc.drift_limit;
    while corrected.iter().any(Option::is_none) {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((i, version, at_rv, at))) => {
                let (edited_rv, edited_at) = edited[i];
                if corrected[i].is_none() && at_rv > edited_rv && version == desired[i] {
                    corrected[i] = Some(at.saturating_duration_since(edited_at));
                }
            }
            _ => break,
        }
    }
    for w in watches {
        w.abort();
    }
    let done: Vec<Duration> = corrected.iter().flatten().copied().collect();
    let note = if done.len() < n {
        let s = server.to_string();
        let report = tokio::task::spawn_blocking(move || status(&s)).await?;
        report.and_then(|r| {
            targets
                .iter()
                .zip(&corrected)
                .find(|(_, c)| c.is_none())
                .and_then(|((cluster, _), _)| r.clusters.get(cluster))
                .map(|c| {
                    let drift: Vec<&String> = c.claims.iter().flat_map(|cl| &cl.drift).collect();
                    format!(
                        "last error: {}; drift reported: {}",
                        c.last_error.as_deref().unwrap_or("none"),
                        if drift.is_empty() {
                            "none".to_string()
                        } else {
                            drift
                                .iter()
                                .map(|d| d.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        }
                    )
                })
        })
    } else {
        None
    };
    Ok(Drift {
        edited: n,
        corrected: done.len(),
        latency: Percentiles::of(done),
        note,
    })
}

/// Only the convergence, for timing the whole process from outside: a fresh simulator,
/// the agent until every claim is ready, then both stopped. The agent's usage is the one
/// at ready (its peak RSS so far and CPU).
pub async fn once(bin: &Path, work: &Path, clusters: usize) -> Result<(Duration, Usage)> {
    let o = run(
        bin,
        work,
        Scenario {
            clusters,
            claims_per_cluster: 1,
            ready_after: Duration::ZERO,
            steady: None,
            drift: 0,
            drift_limit: Duration::ZERO,
        },
    )
    .await?;
    Ok((o.cold, o.at_ready))
}

/// Only the steady state: a fresh simulator, the agent until every claim is ready, then
/// `window` with nothing changing (the agent's CPU, the requests, the audited writes).
/// The cold start (time to all ready, the agent's usage then) and the steady window.
pub async fn idle(
    bin: &Path,
    work: &Path,
    clusters: usize,
    window: Duration,
    drift: usize,
) -> Result<(Duration, Usage, Steady, Option<Drift>)> {
    let o = run(
        bin,
        work,
        Scenario {
            clusters,
            claims_per_cluster: 1,
            ready_after: Duration::ZERO,
            steady: Some(window),
            drift,
            drift_limit: Duration::from_secs(20),
        },
    )
    .await?;
    Ok((
        o.cold,
        o.at_ready,
        o.steady.context("no steady window")?,
        o.drift,
    ))
}
