//! Failover under leader election: three `psql-fleet run --leader-elect` processes on one
//! simulated fleet (the Lease and the rollout state on one of its clusters), client-go's
//! timings unless in test mode. Measures, over several rounds:
//!
//! - writes at steady state with three replicas (fleet objects, and the Lease and state
//!   ConfigMap writes on the management cluster), which should be 0 for the fleet;
//! - `kill -9` of the leader to another replica leading, and to every cluster reconciled by
//!   it (a pass of the new leader over each cluster);
//! - SIGTERM of the leader (it releases the Lease) to another replica leading;
//!
//! and then, with the clusters sharded (`--shards 6`) over three replicas:
//!
//! - writes at steady state (fleet objects; Lease renewals; the shards' health and status
//!   ConfigMaps, which should be 0 too);
//! - `kill -9` of a replica to its clusters served and ready again by the others' own
//!   passes (its shards' Leases expired and taken).
//!
//! Run with `cargo bench --bench failover` (or `make bench`); `cargo test --benches` runs one
//! short round with short timings.

use std::time::{Duration, Instant};

use kube_sim::audit::AuditEntry;
use psql_fleet::status::StatusReport;
use test_support::agent::{leader_elect_args, AgentProcess, ProcessOptions};
use test_support::audit::{EVENTS, RELEASES, USAGES};
use test_support::SimFleet;

/// Lease duration, renew deadline, retry period.
type Timings = [&'static str; 3];

const CLIENT_GO: Timings = ["15s", "10s", "2s"];
const SHORT: Timings = ["3s", "2s", "500ms"];

async fn spawn(f: &SimFleet, name: &str, t: Timings) -> AgentProcess {
    spawn_with(f, name, t, &[]).await
}

async fn spawn_with(f: &SimFleet, name: &str, t: Timings, more: &[&str]) -> AgentProcess {
    let kubeconfig = f.sim.kubeconfig_path(&f.names[0]);
    let mut args = leader_elect_args(&kubeconfig, name, t);
    args.extend(more.iter().map(|a| a.to_string()));
    f.spawn_agent(ProcessOptions {
        name: Some(name.into()),
        rust_log: Some("warn".into()),
        args,
        ..ProcessOptions::default()
    })
    .await
}

/// The clusters `r`'s replica serves itself, every claim ready.
fn own_ready(r: &StatusReport) -> Vec<String> {
    let me = r.leader.as_ref().map(|l| l.identity.as_str());
    r.clusters
        .iter()
        .filter(|(_, c)| c.served_by.as_deref() == me)
        .filter(|(_, c)| c.reachable && !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Waits until the replicas' own passes cover all `clusters`, each by one replica; how
/// long that took.
async fn sharded_ready(agents: &[AgentProcess], clusters: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let mut served = Vec::new();
        for a in agents {
            if let Some(r) = a.status().await {
                served.extend(own_ready(&r));
            }
        }
        let n = served.len();
        served.sort();
        served.dedup();
        if n == clusters && served.len() == clusters {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not every cluster served after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until each of the three replicas holds two of the six shards.
async fn balanced(agents: &[AgentProcess], limit: Duration) {
    let start = Instant::now();
    loop {
        let mut even = true;
        for a in agents {
            let held = a
                .status()
                .await
                .and_then(|r| r.shards)
                .map(|s| s.held.len());
            even &= held == Some(2);
        }
        if even {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "the shards not shared evenly after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sharded over three replicas: the steady state's writes, and `kill -9` of a replica to
/// its clusters served again; the report's section.
async fn shard_failover(
    clusters: usize,
    rounds: usize,
    steady: Duration,
    t: Timings,
) -> (String, usize) {
    const SHARDS: &str = "6";
    let f = SimFleet::start(clusters, Duration::from_millis(200)).await;
    f.claim_everywhere();
    let limit = Duration::from_secs(120);
    let mut agents = Vec::new();
    for name in ["s0", "s1", "s2"] {
        agents.push(spawn_with(&f, name, t, &["--shards", SHARDS]).await);
    }
    let cold = sharded_ready(&agents, clusters, limit).await;
    balanced(&agents, limit).await;
    sharded_ready(&agents, clusters, limit).await;
    // The shards' health and status are published every retry period after the passes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mark = f.audit_all().len();
    tokio::time::sleep(steady).await;
    let window = f.audit_all().split_off(mark);
    let fleet_writes = window.iter().filter(|e| fleet_write(e)).count();
    let lease_writes = window
        .iter()
        .filter(|e| e.resource == "leases.coordination.k8s.io")
        .count();
    let map_writes = window.iter().filter(|e| e.resource == "configmaps").count();
    for e in window.iter().filter(|e| e.resource == "configmaps") {
        eprintln!("ConfigMap write at steady state, sharded: {e:?}");
    }
    let mut killed = Vec::new();
    for round in 0..rounds {
        // Not the first replica: it is the likeliest leader, measured above.
        let victim = 1 + round % 2;
        let at = Instant::now();
        agents[victim].kill();
        drop(agents.remove(victim));
        killed.push(
            sharded_ready(&agents, clusters, limit)
                .await
                .max(at.elapsed()),
        );
        agents.push(spawn_with(&f, &format!("s{}", round + 3), t, &["--shards", SHARDS]).await);
        balanced(&agents, limit).await;
        sharded_ready(&agents, clusters, limit).await;
    }
    let mut sorted = killed.clone();
    sorted.sort();
    let all = killed
        .iter()
        .map(|d| secs(*d))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "\n## Shard failover (--shards {SHARDS}, 3 replicas, {clusters} clusters, lease {} / renew {} / retry {})\n\n",
        t[0], t[1], t[2]
    );
    out.push_str("| measure | median | all rounds |\n| --- | --- | --- |\n");
    out.push_str(&format!(
        "| cold start, 3 replicas, to every cluster ready by its shard's holder | {} | |\n",
        secs(cold)
    ));
    out.push_str(&format!(
        "| `kill -9` of a replica to its clusters ready by the others' own passes | {} | {all} |\n",
        secs(sorted[sorted.len() / 2])
    ));
    out.push_str(&format!(
        "\nSteady state over {} s, sharded: {fleet_writes} writes to fleet clusters, {lease_writes} Lease writes (3 member and 6 shard Leases renewed every retry period, the leader Lease) and {map_writes} ConfigMap writes (rollout state, the shards' health and status) on the management cluster.\n",
        steady.as_secs()
    ));
    f.shutdown().await;
    (out, fleet_writes + map_writes)
}

fn leads(r: &StatusReport) -> bool {
    r.leader.as_ref().is_some_and(|l| l.role == "leader")
}

/// Every cluster read by a pass of this replica, every claim ready, the rollout complete.
fn reconciled(r: &StatusReport, clusters: usize) -> bool {
    leads(r)
        && r.rollout.as_ref().is_some_and(|x| x.phase == "complete")
        && r.clusters.len() == clusters
        && r.clusters
            .values()
            .all(|c| c.reachable && !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
}

/// The first of `agents` whose status passes `done`, and when.
async fn first(
    agents: &[AgentProcess],
    limit: Duration,
    done: impl Fn(&StatusReport) -> bool,
) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        for (i, a) in agents.iter().enumerate() {
            if a.status().await.as_ref().is_some_and(&done) {
                return (i, start.elapsed());
            }
        }
        assert!(start.elapsed() < limit, "nothing after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fleet_write(e: &AuditEntry) -> bool {
    [RELEASES, USAGES, EVENTS].contains(&e.resource.as_str())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (clusters, rounds, mut steady, t) = if bench {
        (100, 3, Duration::from_secs(60), CLIENT_GO)
    } else {
        (3, 1, Duration::from_secs(2), SHORT)
    };
    if let Some(secs) = std::env::var("FAILOVER_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        steady = Duration::from_secs(secs);
    }
    let f = SimFleet::start(clusters, Duration::from_millis(200)).await;
    f.claim_everywhere();
    let limit = Duration::from_secs(120);
    let mut agents = Vec::new();
    for name in ["r0", "r1", "r2"] {
        agents.push(spawn(&f, name, t).await);
    }
    let (mut leader, cold) = first(&agents, limit, |r| reconciled(r, clusters)).await;

    // The save of the rollout's completion trails the status that says so by a request to
    // the management cluster; the steady window starts after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = f.audit_all().len();
    tokio::time::sleep(steady).await;
    let window = f.audit_all().split_off(mark);
    let fleet_writes = window.iter().filter(|e| fleet_write(e)).count();
    let lease_writes = window
        .iter()
        .filter(|e| e.resource == "leases.coordination.k8s.io")
        .count();
    let state_writes = window.iter().filter(|e| e.resource == "configmaps").count();
    for e in window.iter().filter(|e| e.resource == "configmaps") {
        eprintln!("state write at steady state: {e:?}");
    }

    let mut killed_lead = Vec::new();
    let mut killed_reconciled = Vec::new();
    let mut released_lead = Vec::new();
    for round in 0..rounds * 2 {
        let graceful = round % 2 == 1;
        let at = Instant::now();
        if graceful {
            agents[leader].terminate();
        } else {
            agents[leader].kill();
        }
        let _ = agents[leader].wait(Duration::from_secs(30)).await;
        let gone = agents.remove(leader);
        drop(gone);
        let (i, led) = first(&agents, limit, leads).await;
        if graceful {
            released_lead.push(led);
        } else {
            killed_lead.push(led);
            first(&agents, limit, |r| reconciled(r, clusters)).await;
            killed_reconciled.push(at.elapsed());
        }
        leader = i;
        // Back to three replicas for the next round.
        agents.push(spawn(&f, &format!("r{}", round + 3), t).await);
    }

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "## Failover (leader election, 3 replicas, {clusters} clusters, lease {} / renew {} / retry {})\n",
        t[0], t[1], t[2]
    );
    println!("| measure | median | all rounds |");
    println!("| --- | --- | --- |");
    let all = |v: &[Duration]| v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ");
    println!(
        "| cold start, 3 replicas, to every cluster ready | {} | |",
        secs(cold)
    );
    println!(
        "| `kill -9` of the leader to another leading | {} | {} |",
        secs(median(&mut killed_lead.clone())),
        all(&killed_lead)
    );
    println!(
        "| `kill -9` of the leader to every cluster reconciled by the next | {} | {} |",
        secs(median(&mut killed_reconciled.clone())),
        all(&killed_reconciled)
    );
    println!(
        "| SIGTERM of the leader (Lease released) to another leading | {} | {} |",
        secs(median(&mut released_lead.clone())),
        all(&released_lead)
    );
    println!(
        "\nSteady state over {} s with 3 replicas: {fleet_writes} writes to fleet clusters, {lease_writes} Lease writes and {state_writes} rollout-state ConfigMap writes on the management cluster.",
        steady.as_secs()
    );
    assert_eq!(fleet_writes, 0, "writes to the fleet at steady state");
    assert!(lease_writes > 0, "the leader renews its Lease");
    f.shutdown().await;

    let (section, writes) = shard_failover(clusters.max(12), rounds, steady, t).await;
    print!("{section}");
    assert_eq!(
        writes, 0,
        "fleet or ConfigMap writes at steady state, sharded"
    );
}
