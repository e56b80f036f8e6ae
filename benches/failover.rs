//! Failover under leader election: three `psql-fleet run --leader-elect` processes on one
//! simulated fleet (the Lease and the rollout state on one of its clusters), client-go's
//! timings unless in test mode. Measures, over several rounds:
//!
//! - writes at steady state with three replicas (fleet objects, and the Lease and state
//!   ConfigMap writes on the management cluster), which should be 0 for the fleet;
//! - `kill -9` of the leader to another replica leading, and to every cluster reconciled by
//!   it (a pass of the new leader over each cluster);
//! - SIGTERM of the leader (it releases the Lease) to another replica leading.
//!
//! Run with `cargo bench --bench failover` (or `make bench`); `cargo test --benches` runs one
//! short round with short timings. The clusters are not sharded over replicas (issue 15
//! leaves that open), so there is no shard failover to measure.

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
    let kubeconfig = f.sim.kubeconfig_path(&f.names[0]);
    f.spawn_agent(ProcessOptions {
        name: Some(name.into()),
        rust_log: Some("warn".into()),
        args: leader_elect_args(&kubeconfig, name, t),
        ..ProcessOptions::default()
    })
    .await
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
}
