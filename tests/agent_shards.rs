//! Sharding end to end: `psql-fleet run --leader-elect --shards 6` as three processes on
//! 60 simulated clusters, the Leases on one of them (the management cluster), with short
//! timings (lease 3 s, renew deadline 2 s, retry 0.5 s). Each replica holds its share of
//! the shard Leases and writes to the clusters of those shards only; `kill -9` of one has
//! its clusters taken over by the others within a lease duration. The simulator's audit
//! log (one log, in the order requests were served, each with its User-Agent) shows every
//! fleet write made by the replica that last wrote its shard's Lease: no cluster written
//! by two replicas in overlapping terms.
//!
//! The rollout stays fleet-wide: the leader alone decides it, from the health each shard's
//! holder publishes, and the others give their clusters what the leader decided; a leader
//! killed mid-rollout is followed by one that goes on from the wave it was in.

use test_support as common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::agent::{leader_elect_args, AgentProcess, ProcessOptions};
use common::audit::{EVENTS, RELEASES, USAGES};
use common::status::{converged, metric};
use common::SimFleet;
use fleet_core::shard::shard_of;
use fleet_core::testing::{claim, cluster, fleet, wave, Fleet, Wave};
use kube_sim::audit::AuditEntry;
use psql_fleet::status::StatusReport;

const SHARDS: u32 = 6;
const LEASE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
/// Polling the status, process scheduling on a loaded 2-core machine with three agents
/// and 60 clusters, and the retry jitter.
const SLACK: Duration = Duration::from_millis(2500);
const LEASE_RESOURCE: &str = "leases.coordination.k8s.io";

/// `psql-fleet run --leader-elect --shards 6` as `agent-<name>`, the Leases on
/// `management`.
async fn spawn(f: &SimFleet, name: &str, management: &str) -> AgentProcess {
    let kubeconfig = f.sim.kubeconfig_path(management);
    let mut args = leader_elect_args(&kubeconfig, &format!("agent-{name}"), ["3s", "2s", "500ms"]);
    args.extend(["--shards".to_string(), SHARDS.to_string()]);
    f.spawn_agent(ProcessOptions {
        name: Some(name.into()),
        args,
        ..ProcessOptions::default()
    })
    .await
}

fn held(r: &StatusReport) -> BTreeSet<u32> {
    r.shards
        .as_ref()
        .map(|s| s.held.iter().copied().collect())
        .unwrap_or_default()
}

/// The clusters of `shards`.
fn clusters_of(f: &SimFleet, shards: &BTreeSet<u32>) -> Vec<String> {
    f.names
        .iter()
        .filter(|c| shards.contains(&shard_of(c, SHARDS)))
        .cloned()
        .collect()
}

/// The clusters `r` says its replica serves itself.
fn own(r: &StatusReport) -> BTreeSet<String> {
    let me = r.leader.as_ref().map(|l| l.identity.as_str());
    r.clusters
        .iter()
        .filter(|(_, c)| c.served_by.as_deref() == me)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Waits until `agents` hold every shard between them, `each` apiece, and each has
/// converged on the clusters of its shards, serving them itself; the shards each holds.
async fn settled(f: &SimFleet, agents: &[&AgentProcess], each: usize) -> Vec<BTreeSet<u32>> {
    settled_as(f, agents, &vec![each; agents.len()]).await
}

/// [`settled`], the `i`th agent holding `counts[i]` shards.
async fn settled_as(
    f: &SimFleet,
    agents: &[&AgentProcess],
    counts: &[usize],
) -> Vec<BTreeSet<u32>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut all = Vec::new();
        for a in agents {
            all.push(a.status().await.unwrap_or_default());
        }
        let shards: Vec<BTreeSet<u32>> = all.iter().map(held).collect();
        let union: BTreeSet<u32> = shards.iter().flatten().copied().collect();
        let ok = union.len() == SHARDS as usize
            && shards.iter().map(BTreeSet::len).eq(counts.iter().copied())
            && all.iter().zip(&shards).all(|(r, s)| {
                let mine = clusters_of(f, s);
                converged(r, &mine, 1) && own(r) == mine.iter().cloned().collect()
            });
        if ok {
            return shards;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not settle on {counts:?} shards: {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until each agent exports `psql_fleet_shard_clusters` for the shards it holds and
/// for those only, and `psql_fleet_shards` 6; the sum of their clusters.
async fn shard_metrics(agents: &[&AgentProcess], shards: &[BTreeSet<u32>]) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut total = 0.0;
        let mut ok = true;
        for (agent, mine) in agents.iter().zip(shards) {
            let m = agent.metrics().await;
            ok &= metric(&m, "psql_fleet_shards", &[]) == Some(f64::from(SHARDS));
            for shard in 0..SHARDS {
                let v = metric(
                    &m,
                    "psql_fleet_shard_clusters",
                    &[("shard", &shard.to_string())],
                );
                ok &= v.is_some() == mine.contains(&shard);
                total += v.unwrap_or(0.0);
            }
        }
        if ok {
            return total;
        }
        assert!(
            Instant::now() < deadline,
            "the shard metrics do not say {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `agent-x` from `psql-fleet/<version> (agent-x)`.
fn replica(e: &AuditEntry) -> Option<&str> {
    let ua = e.user_agent.as_deref()?;
    let rest = ua.strip_prefix("psql-fleet/")?;
    let (_, named) = rest.split_once(" (")?;
    named.strip_suffix(')')
}

fn fleet_write(e: &AuditEntry) -> bool {
    (e.resource == RELEASES || e.resource == USAGES || e.resource == EVENTS)
        && e.code < 300
        && e.verb != "get"
}

/// Every fleet write in `log` made by the replica whose write of its cluster's shard
/// Lease came last before it: a replica that took a shard ends the term of the one that
/// held it, and nothing of the earlier holder's may follow. Every cluster was written by
/// someone. The writers of each cluster, in order.
fn one_writer_per_term(f: &SimFleet, log: &[AuditEntry]) -> BTreeMap<String, Vec<String>> {
    let mut lease_holder: BTreeMap<String, String> = BTreeMap::new();
    let mut writers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in log {
        if e.resource == LEASE_RESOURCE && e.code < 300 && e.verb != "delete" {
            if let (Some(name), Some(who)) = (&e.name, replica(e)) {
                lease_holder.insert(name.clone(), who.to_string());
            }
            continue;
        }
        // The test's own edits are no replica's.
        let drift = e.field_manager.as_deref() == Some("kubectl-edit");
        // A shard's health and status are its holder's to publish, as its clusters are its
        // to write.
        let health_of = e
            .name
            .as_deref()
            .filter(|_| e.resource == "configmaps" && e.code < 300)
            .and_then(|n| {
                let rest = n.strip_prefix("psql-fleet-shard-")?;
                rest.strip_suffix("-health")
                    .or_else(|| rest.strip_suffix("-status"))
            });
        if let Some(shard) = health_of {
            let who = replica(e).unwrap_or_else(|| panic!("a write names no replica: {e:?}"));
            let lease = format!("psql-fleet-shard-{shard}");
            assert_eq!(
                lease_holder.get(&lease).map(String::as_str),
                Some(who),
                "{who} published for {lease} while another held it: {e:?}"
            );
            continue;
        }
        if !fleet_write(e) || drift || !f.names.contains(&e.cluster) {
            continue;
        }
        let who = replica(e).unwrap_or_else(|| panic!("a fleet write names no replica: {e:?}"));
        let lease = format!("psql-fleet-shard-{}", shard_of(&e.cluster, SHARDS));
        assert_eq!(
            lease_holder.get(&lease).map(String::as_str),
            Some(who),
            "{who} wrote to {} while {lease} was last written by another: {e:?}",
            e.cluster
        );
        let w = writers.entry(e.cluster.clone()).or_default();
        if w.last().map(String::as_str) != Some(who) {
            w.push(who.to_string());
        }
    }
    for cluster in &f.names {
        assert!(writers.contains_key(cluster), "nobody wrote to {cluster}");
    }
    writers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_split_the_fleet_and_a_killed_ones_clusters_are_taken_over_within_a_lease() {
    // 60 by default, to keep the suite quick; SHARD_TEST_CLUSTERS=300 runs the size.
    let clusters: usize = std::env::var("SHARD_TEST_CLUSTERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    let f = SimFleet::start(clusters, Duration::from_millis(200)).await;
    let management = f.names[0].clone();
    f.claim_everywhere();
    let a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let mut c = spawn(&f, "c", &management).await;
    let shards = settled(&f, &[&a, &b, &c], 2).await;

    // Each replica serves the clusters of its shards, and the status of every replica
    // says so for the whole fleet.
    let whole = |r: &StatusReport| {
        f.names.iter().all(|name| {
            r.clusters.get(name).is_some_and(|c| {
                let holder = ["agent-a", "agent-b", "agent-c"]
                    .iter()
                    .zip(&shards)
                    .find(|(_, s)| s.contains(&shard_of(name, SHARDS)))
                    .map(|(who, _)| *who);
                c.served_by.as_deref() == holder
            })
        }) && converged(r, &f.names, 1)
    };
    for agent in [&a, &b, &c] {
        agent.wait_for("the whole fleet in the status", whole).await;
    }
    // Each exports the clusters of its own shards: summed, the fleet.
    assert_eq!(shard_metrics(&[&a, &b, &c], &shards).await, clusters as f64);

    // agent-c dies without a word; one of its clusters drifts meanwhile.
    let orphaned = clusters_of(&f, &shards[2]);
    let drifted = orphaned[0].clone();
    c.kill();
    let killed = Instant::now();
    let killed_at = f.audit_all().len();
    f.admin(
        "POST",
        &format!("/clusters/{drifted}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "default",
            "manager": "kubectl-edit", "patch": {"spec": {"rollbackLimit": 7}}}),
    )
    .await;
    let shards = settled(&f, &[&a, &b], 3).await;
    let took = killed.elapsed();
    eprintln!("agent-c's clusters were reconciled by agent-a and agent-b {took:?} after the kill");
    assert!(
        took <= LEASE + RETRY + SLACK,
        "agent-c's shards were taken over and reconciled {took:?} after the kill"
    );
    let union: BTreeSet<u32> = shards.iter().flatten().copied().collect();
    assert_eq!(union.len(), SHARDS as usize);

    for agent in [&a, &b] {
        let r = agent
            .wait_for("the whole fleet served by agent-a and agent-b", |r| {
                converged(r, &f.names, 1)
                    && r.clusters
                        .values()
                        .all(|c| matches!(c.served_by.as_deref(), Some("agent-a" | "agent-b")))
            })
            .await;
        assert_eq!(r.clusters.len(), f.names.len());
    }

    let log = f.audit_all();
    let corrected = log[killed_at..].iter().any(|e| {
        e.cluster == drifted
            && e.resource == RELEASES
            && fleet_write(e)
            && matches!(replica(e), Some("agent-a" | "agent-b"))
    });
    assert!(
        corrected,
        "the drift on {drifted} was corrected by agent-a or agent-b"
    );
    let writers = one_writer_per_term(&f, &log);
    eprintln!(
        "writers of agent-c's clusters: {:?}",
        orphaned
            .iter()
            .map(|c| (c, &writers[c]))
            .collect::<Vec<_>>()
    );
}

/// Twelve clusters labelled dev (the management cluster among them), staging and prod,
/// four each, one claim each.
async fn twelve_in_three_envs() -> SimFleet {
    let f = SimFleet::start(12, Duration::from_millis(200)).await;
    for (i, name) in f.names.iter().enumerate() {
        let env = ["dev", "staging", "prod"][i / 4];
        f.put(&cluster(name).label("env", env));
        f.put(&claim("app", name));
    }
    f
}

/// The waves dev, `staging` and prod, StackGres pinned at `stackgres`.
fn waves(stackgres: &str, staging: Wave) -> Fleet {
    fleet("main")
        .force(true)
        .pin("stackgres-operator", stackgres)
        .wave(wave("dev", &[("env", "dev")]).bake_time("1s"))
        .wave(staging)
        .wave(wave("prod", &[("env", "prod")]))
}

fn staging() -> Wave {
    wave("staging", &[("env", "staging")])
}

/// [`waves`] with staging baking 1 s.
fn waved(f: &SimFleet, stackgres: &str) {
    f.put(&waves(stackgres, staging().bake_time("1s")));
}

/// Which of `agents` leads.
async fn leader_of(agents: &[&AgentProcess]) -> usize {
    let mut leader = None;
    for (i, agent) in agents.iter().enumerate() {
        let r = agent.report().await;
        if r.leader.as_ref().is_some_and(|l| l.role == "leader") {
            leader = Some(i);
        }
    }
    leader.expect("one of them leads")
}

fn complete_at<'a>(r: &'a StatusReport, not: &str) -> Option<&'a str> {
    r.rollout
        .as_ref()
        .filter(|x| x.revision != not && x.phase == "complete")
        .map(|x| x.revision.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_alone_rolls_out_wave_by_wave_from_the_health_the_shards_publish() {
    let f = twelve_in_three_envs().await;
    let management = f.names[0].clone();
    waved(&f, "1.18.4");
    let a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let c = spawn(&f, "c", &management).await;
    let agents = [&a, &b, &c];
    let shards = settled(&f, &agents, 2).await;
    let leader = leader_of(&agents).await;
    let leads = agents[leader];
    let leader_name = ["agent-a", "agent-b", "agent-c"][leader];
    // Every wave holds clusters of other replicas' shards: without their health the
    // leader could not judge one complete.
    let others: Vec<String> = shards
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .flat_map(|(_, s)| clusters_of(&f, s))
        .collect();
    assert!(!others.is_empty());

    let first = leads
        .wait_for_within(
            "the first revision everywhere",
            Duration::from_secs(60),
            |r| complete_at(r, "").is_some(),
        )
        .await
        .rollout
        .unwrap()
        .revision;
    waved(&f, "1.19.0");
    let done = leads
        .wait_for_within("the bump everywhere", Duration::from_secs(90), |r| {
            complete_at(r, &first).is_some()
        })
        .await;
    let bump = done.rollout.unwrap();
    let states: Vec<&str> = bump.waves.iter().map(|w| w.state.as_str()).collect();
    assert_eq!(states, ["complete", "complete", "complete"]);
    for name in &f.names {
        assert_eq!(
            common::audit::release_version(&f.sim, name, "stackgres-operator").as_deref(),
            Some("1.19.0"),
            "{name}"
        );
    }
    // The others follow: they say the same rollout.
    for agent in agents {
        let r = agent
            .wait_for("the bump complete in its status", |r| {
                complete_at(r, &first) == Some(bump.revision.as_str())
            })
            .await;
        assert!(r.rollout.is_some());
    }

    let log = f.audit_all();
    let decided: Vec<&AuditEntry> = log
        .iter()
        .filter(|e| e.resource == "configmaps" && e.code < 300)
        .filter(|e| e.name.as_deref() == Some("psql-fleet-rollout"))
        .collect();
    assert!(!decided.is_empty());
    for e in &decided {
        assert_eq!(
            replica(e),
            Some(leader_name),
            "only the leader decides: {e:?}"
        );
    }
    one_writer_per_term(&f, &log);
}

/// A rollout halted in staging and resumed on the leader completes. The resume forgets
/// every cluster's health, so right after it staging waits on the clusters the other
/// replicas serve ("no reconcile pass at this revision yet") until the leader has their
/// health again from the shards' ConfigMaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_resumed_on_the_leader_completes_on_the_health_the_other_shards_published() {
    let f = twelve_in_three_envs().await;
    let management = f.names[0].clone();
    let timed = |stackgres: &str| waves(stackgres, staging().bake_time("1s").timeout("5s"));
    f.put(&timed("1.18.4"));
    let a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let c = spawn(&f, "c", &management).await;
    let agents = [&a, &b, &c];
    let shards = settled(&f, &agents, 2).await;
    let leader = leader_of(&agents).await;
    let leads = agents[leader];
    // A staging cluster to fail, and another one served by a replica that does not lead,
    // whose health will not change.
    let elsewhere: BTreeSet<String> = shards
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .flat_map(|(_, s)| clusters_of(&f, s))
        .collect();
    let staging = &f.names[4..8];
    let failing = staging
        .iter()
        .find(|c| staging.iter().any(|o| o != *c && elsewhere.contains(o)))
        .expect("a staging cluster served by a replica that does not lead")
        .clone();

    let first = leads
        .wait_for_within(
            "the first revision everywhere",
            Duration::from_secs(60),
            |r| complete_at(r, "").is_some(),
        )
        .await
        .rollout
        .unwrap()
        .revision;
    f.faults(&failing, serde_json::json!({"errorRate": 1.0}))
        .await;
    f.put(&timed("1.19.0"));
    leads
        .wait_for_within("the bump halted in staging", Duration::from_secs(60), |r| {
            r.rollout
                .as_ref()
                .is_some_and(|x| x.revision != first && x.phase == "halted")
        })
        .await;
    f.faults(&failing, serde_json::json!({})).await;
    leads
        .wait_for_within(
            "the failing cluster ready again",
            Duration::from_secs(60),
            |r| {
                r.clusters.get(&failing).is_some_and(|c| {
                    c.last_error.is_none()
                        && !c.claims.is_empty()
                        && c.claims.iter().all(|x| x.ready)
                })
            },
        )
        .await;
    let (code, _, body) = leads
        .control("POST", "/api/v1/rollout/resume", Some("{}"))
        .await;
    assert_eq!(code, 200, "{body}");
    // Staging times out 5 s after the resume if the leader waits on health it forgot.
    leads
        .wait_for_within("the resumed bump complete", Duration::from_secs(60), |r| {
            complete_at(r, &first).is_some()
        })
        .await;
    for name in &f.names {
        assert_eq!(
            common::audit::release_version(&f.sim, name, "stackgres-operator").as_deref(),
            Some("1.19.0"),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_followed_by_one_that_goes_on_from_the_wave_the_rollout_was_in() {
    let f = twelve_in_three_envs().await;
    let management = f.names[0].clone();
    let dev = f.names[..4].to_vec();
    // Staging bakes long enough to kill the leader in the middle of it.
    let pinned = |stackgres: &str| f.put(&waves(stackgres, staging().bake_time("8s")));
    pinned("1.18.4");
    let mut agents = [
        spawn(&f, "a", &management).await,
        spawn(&f, "b", &management).await,
        spawn(&f, "c", &management).await,
    ];
    settled(&f, &agents.iter().collect::<Vec<_>>(), 2).await;
    let leader = leader_of(&agents.iter().collect::<Vec<_>>()).await;
    let first = agents[leader]
        .wait_for_within(
            "the first revision everywhere",
            Duration::from_secs(90),
            |r| complete_at(r, "").is_some(),
        )
        .await
        .rollout
        .unwrap()
        .revision;
    pinned("1.19.0");
    agents[leader]
        .wait_for_within("staging baking the bump", Duration::from_secs(60), |r| {
            r.rollout
                .as_ref()
                .is_some_and(|x| x.revision != first && x.waves[1].state == "baking")
        })
        .await;
    let killed_at = f.audit_all().len();
    let killed = Instant::now();
    agents[leader].kill();
    let survivors: Vec<&AgentProcess> = agents
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, a)| a)
        .collect();
    let mut next = None;
    while next.is_none() {
        for agent in &survivors {
            if agent
                .status()
                .await
                .and_then(|r| r.leader)
                .is_some_and(|l| l.role == "leader")
            {
                next = Some(*agent);
            }
        }
        assert!(
            killed.elapsed() < LEASE + RETRY + SLACK,
            "no replica leads {:?} after the leader was killed",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = next.unwrap();
    let done = next
        .wait_for_within("the bump complete", Duration::from_secs(60), |r| {
            complete_at(r, &first).is_some()
        })
        .await
        .rollout
        .unwrap();
    let states: Vec<&str> = done.waves.iter().map(|w| w.state.as_str()).collect();
    assert_eq!(states, ["complete", "complete", "complete"]);
    for name in &f.names {
        assert_eq!(
            common::audit::release_version(&f.sim, name, "stackgres-operator").as_deref(),
            Some("1.19.0"),
            "{name}"
        );
    }
    // The wave it was in went on: dev, done before the kill, was not given anything again.
    let log = f.audit_all();
    let dev_again: Vec<&AuditEntry> = log[killed_at..]
        .iter()
        .filter(|e| dev.contains(&e.cluster) && e.resource == RELEASES && fleet_write(e))
        .collect();
    assert!(dev_again.is_empty(), "dev written again: {dev_again:?}");
    one_writer_per_term(&f, &log);
}

/// Samples the shards held in the status of every agent in `servers` every 100 ms until
/// told to stop: the longest time any shard was held by none of them.
fn watch_gaps(
    servers: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Duration>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut last_held: BTreeMap<u32, Instant> = BTreeMap::new();
        let mut longest = Duration::ZERO;
        let start = Instant::now();
        loop {
            let now_servers = servers.lock().unwrap().clone();
            let mut held_now = BTreeSet::new();
            for server in now_servers {
                if let Ok(body) = psql_fleet::cli::status::get(&server, "/api/v1/status").await {
                    if let Ok(r) = serde_json::from_str::<StatusReport>(&body) {
                        held_now.extend(held(&r));
                    }
                }
            }
            let now = Instant::now();
            for shard in 0..SHARDS {
                if held_now.contains(&shard) {
                    last_held.insert(shard, now);
                }
                let since = last_held.get(&shard).copied().unwrap_or(start);
                longest = longest.max(now - since);
            }
            tokio::select! {
                _ = &mut stopped => return longest,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_from_three_replicas_to_five_and_back_moves_shards_without_a_gap_or_overlap() {
    let f = SimFleet::start(30, Duration::from_millis(200)).await;
    let management = f.names[0].clone();
    f.claim_everywhere();
    let a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let c = spawn(&f, "c", &management).await;
    settled(&f, &[&a, &b, &c], 2).await;
    let servers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        a.server.clone(),
        b.server.clone(),
        c.server.clone(),
    ]));
    let (stop, gaps) = watch_gaps(servers.clone());

    // Two join: six shards over five replicas, the first in name order holding two.
    let d = spawn(&f, "d", &management).await;
    let e = spawn(&f, "e", &management).await;
    servers
        .lock()
        .unwrap()
        .extend([d.server.clone(), e.server.clone()]);
    let joined = Instant::now();
    settled_as(&f, &[&a, &b, &c, &d, &e], &[2, 1, 1, 1, 1]).await;
    eprintln!("3 -> 5 replicas settled in {:?}", joined.elapsed());

    // And leave, cleanly (SIGTERM): they release their shards, which the others take.
    let left = Instant::now();
    servers.lock().unwrap().truncate(3);
    d.stop().await;
    e.stop().await;
    settled(&f, &[&a, &b, &c], 2).await;
    eprintln!("5 -> 3 replicas settled in {:?}", left.elapsed());
    let _ = stop.send(());
    let longest = gaps.await.unwrap();
    eprintln!("the longest time a shard had no holder: {longest:?}");
    assert!(
        longest <= LEASE,
        "a shard had no holder for {longest:?}, more than a lease duration"
    );
    one_writer_per_term(&f, &f.audit_all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_writes_nothing_to_the_shards_others_took_meanwhile() {
    let f = SimFleet::start(30, Duration::from_millis(200)).await;
    let management = f.names[0].clone();
    f.claim_everywhere();
    let a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let c = spawn(&f, "c", &management).await;
    let shards = settled(&f, &[&a, &b, &c], 2).await;

    // Paused past its lease: the others take its shards.
    c.signal("STOP");
    settled(&f, &[&a, &b], 3).await;
    // One of its clusters drifts, which agent-c, woken, would correct at once if
    // nothing fenced it; the audit check below would then fail.
    let drifted = clusters_of(&f, &shards[2])[0].clone();
    f.admin(
        "POST",
        &format!("/clusters/{drifted}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "default",
            "manager": "kubectl-edit", "patch": {"spec": {"rollbackLimit": 7}}}),
    )
    .await;
    c.signal("CONT");

    // It says it lost its shards, and takes its share back from the others.
    settled(&f, &[&a, &b, &c], 2).await;
    let log = std::fs::read_to_string(f.sim_dir().join("agent-c.log")).unwrap();
    assert!(log.contains("lost the shard"), "{log}");
    one_writer_per_term(&f, &f.audit_all());
}
