//! The fault matrix: the agent against `psql-fleet sim` while the simulator injects faults
//! (its admin API, as `psql-fleet sim fault` does). For each fault: the end state is
//! right, nothing is deleted that should not be (the simulator's audit log), and status
//! and metrics say what happened while it happened.

use std::time::Duration;

use fleet_core::testing::{claim, fleet, Claim, Document};
use kube_sim::requests::WRITE_VERBS;
use kube_sim::SimConfig;
use serde_json::json;
use test_support::audit::accepted_deletions;
use test_support::files::{git_url, FleetRepo};
use test_support::git::Daemon;
use test_support::status::{converged, metric};
use test_support::{
    assert_holds_until, assert_quiet_for, eventually, AgentOptions, Endpoint, ProcessOptions,
    SimFleet,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The claim `app` (namespace `default`) of `cluster`, as `SimFleet::claim_everywhere`
/// writes it.
fn app(cluster: &str) -> Claim {
    claim("app", cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_is_reported_then_converges_once_up() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (down, others) = (names[0].clone(), names[1..].to_vec());
    f.faults(&down, json!({"down": true})).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&others, 1).await;
    let report = eventually("the down cluster reported", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&down)?;
        (!c.reachable && c.last_error.is_some()).then_some(r)
    })
    .await;
    let error = report.clusters[&down].last_error.clone().unwrap();
    assert!(error.contains(&down), "{error}");
    let m = agent.metrics().await;
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &down)]),
        Some(0.0),
        "{m}"
    );
    agent.assert_error_counted(&down, "unreachable").await;
    assert!(f.audit_all().iter().all(|e| e.cluster != down));

    f.faults(&down, json!({})).await;
    agent.wait_converged(&names, 1).await;
    assert_eq!(agent.reachable_metric(&down).await, Some(1.0));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_does_not_validate_keeps_the_last_good_one_and_deletes_nothing() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let good = agent.report().await.source.revision.unwrap();
    let before = f.live_objects(&names[0]);
    assert_eq!(before.len(), 3, "{before:?}");

    // Served, this revision would prune the claim of the first cluster.
    f.remove_doc(&app(&names[0]));
    // A claim for a cluster the fleet does not have.
    let bad = claim("bad", "nowhere");
    f.put(&bad);
    let report = eventually("the revision rejected", || async {
        let r = agent.status().await?;
        r.source.rejected.is_some().then_some(r)
    })
    .await;
    assert_eq!(report.source.revision.as_deref(), Some(good.as_str()));
    assert!(
        report
            .source
            .diagnostics
            .iter()
            .any(|d| d.contains(&bad.path()) && d.contains("spec.clusterName")),
        "{:?}",
        report.source.diagnostics
    );
    let m = agent.metrics().await;
    assert_eq!(
        metric(&m, "psql_fleet_source_revision_valid", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            "psql_fleet_source_info",
            &[("revision", &good[..good.len().min(12)])]
        )
        .or_else(|| metric(&m, "psql_fleet_source_info", &[("revision", &good)])),
        Some(1.0),
        "{m}"
    );
    // Several resync passes go by on the last good revision.
    agent
        .assert_holds_for_passes("no deletion", &names[0], 3, || async {
            f.deletions().is_empty() && f.live_objects(&names[0]) == before
        })
        .await;

    f.remove_doc(&bad);
    f.put(&app(&names[0]));
    eventually("the fixed revision served", || async {
        let r = agent.status().await?;
        r.source.rejected.is_none().then_some(())
    })
    .await;
    let m = agent.metrics().await;
    assert_eq!(
        metric(&m, "psql_fleet_source_revision_valid", &[]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_server_errors_are_counted_and_the_fleet_still_converges() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    for name in &names {
        f.faults(name, json!({"errorRate": 0.3})).await;
    }
    let agent = f.start_agent(AgentOptions::default()).await;
    agent
        .wait_converged_within(&names, 1, Duration::from_secs(90))
        .await;
    let m = agent.metrics().await;
    let errors: f64 = names
        .iter()
        .filter_map(|n| {
            metric(
                &m,
                "psql_fleet_reconcile_errors_total",
                &[("cluster", n), ("reason", "api_error")],
            )
        })
        .sum();
    assert!(errors >= 1.0, "no 5xx counted:\n{m}");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_refused_until_the_kubeconfig_on_disk_changes() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    let (rotated, other) = (names[0].clone(), names[1].clone());
    f.put(&app(&other));
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(std::slice::from_ref(&other), 1).await;
    agent
        .wait_converged(std::slice::from_ref(&rotated), 0)
        .await;

    let token = f.rotate_token_out_of_band(&rotated).await;
    f.expire_watches(&rotated).await;
    // The fleet changes while the agent holds a dead token: nothing can be written.
    f.put(&app(&rotated));
    let report = eventually("the 401 reported", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&rotated)?;
        (!c.reachable && c.last_error.as_deref().is_some_and(|e| e.contains("401"))).then_some(r)
    })
    .await;
    assert!(report.clusters[&rotated].claims.iter().all(|c| !c.ready));
    agent.assert_error_counted(&rotated, "forbidden").await;
    let refused = agent.errors(&rotated, "forbidden").await;
    assert_holds_until(
        "nothing written with a rotated token",
        || async {
            !f.audit(&rotated)
                .iter()
                .any(|e| e.verb == "apply" && e.code < 300)
        },
        "two more refused attempts",
        || async { agent.errors(&rotated, "forbidden").await >= refused + 2.0 },
    )
    .await;

    kube_sim::kubeconfig::write_atomic(
        &f.sim.kubeconfig_path(&rotated),
        &kube_sim::kubeconfig::kubeconfig(
            &rotated,
            &f.sim.server_url(&rotated),
            &f.sim.sim.ca_pem,
            &token,
        ),
    )
    .unwrap();
    agent.wait_converged(&names, 1).await;
    assert_eq!(agent.reachable_metric(&rotated).await, Some(1.0));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_the_atlas_and_stackgres_deletions_completes_the_prune_after_restart(
) {
    let f = SimFleet::start(2, ms(600)).await;
    f.claim_everywhere();
    let names = f.names();
    let (pruned, kept) = (names[0].clone(), names[1].clone());
    let mut first = f.spawn_agent(ProcessOptions::default()).await;
    first.wait_converged(&names, 1).await;

    f.remove_doc(&app(&pruned));
    let is_atlas_delete = |e: &kube_sim::audit::AuditEntry| {
        e.cluster == pruned
            && e.verb == "delete"
            && e.name.as_deref() == Some("atlas-operator")
            && e.code < 300
    };
    eventually("the Atlas Release deleted", || async {
        f.audit_all().iter().any(is_atlas_delete).then_some(())
    })
    .await;
    // Nothing more reaches the cluster from this agent. The Usage may already be asked to
    // go (Crossplane holds it until the Atlas Release is gone), but the StackGres Release
    // waits for the uninstall of the Atlas Release, which takes the simulated ready delay.
    f.faults(&pruned, json!({"down": true})).await;
    first.kill();
    let at_kill = f.deletions();
    assert!(
        at_kill
            .iter()
            .all(|e| e.cluster == pruned && e.name.as_deref() != Some("stackgres-operator")),
        "{at_kill:?}"
    );
    assert!(f
        .live_objects(&pruned)
        .iter()
        .any(|o| o.ends_with("/stackgres-operator")));
    f.faults(&pruned, json!({})).await;

    let second = f.spawn_agent(ProcessOptions::default()).await;
    eventually("the prune completed", || async {
        f.live_objects(&pruned).is_empty().then_some(())
    })
    .await;
    // Every delete request, refused ones included: each step once, in the safe order.
    let deletes: Vec<_> = f
        .audit(&pruned)
        .into_iter()
        .filter(|e| e.verb == "delete")
        .collect();
    let order: Vec<&str> = deletes.iter().filter_map(|e| e.name.as_deref()).collect();
    assert_eq!(
        order,
        [
            "atlas-operator",
            "app-delete-atlas-operator-before-stackgres-operator",
            "stackgres-operator"
        ],
        "{deletes:?}"
    );
    assert!(deletes.iter().all(|e| e.code < 300), "{deletes:?}");
    assert!(f.deletions().iter().all(|e| e.cluster == pruned));
    second.wait_converged(std::slice::from_ref(&kept), 1).await;
    let report = second.report().await;
    assert!(report.clusters[&pruned].claims.is_empty());
    drop(second);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_another_manager_is_reported_not_forced_unless_the_fleet_says_force() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let contested = names[0].clone();
    // Another team owns the Atlas chart version on this cluster before psql-fleet comes.
    let api: kube::Api<fleet_core::api::Release> =
        kube::Api::namespaced(f.client(&contested).await, "default");
    let theirs: fleet_core::api::Release = serde_json::from_value(json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": "atlas-operator", "namespace": "default"},
        "spec": {"forProvider": {"chart": {"name": "atlas-operator", "version": "0.7.22"}, "namespace": "stackgres"}}
    }))
    .unwrap();
    api.patch(
        "atlas-operator",
        &kube::api::PatchParams::apply("other-team"),
        &kube::api::Patch::Apply(&theirs),
    )
    .await
    .unwrap();
    let version = || async {
        api.get("atlas-operator")
            .await
            .unwrap()
            .spec
            .for_provider
            .chart
            .version
    };

    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names[1..], 1).await;
    let report = eventually("the conflict reported", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&contested)?;
        c.last_error
            .as_deref()
            .is_some_and(|e| e.contains("conflict"))
            .then_some(r)
    })
    .await;
    assert!(report.clusters[&contested].claims.iter().all(|c| !c.ready));
    agent.assert_error_counted(&contested, "conflict").await;
    let refused = agent.errors(&contested, "conflict").await;
    assert_holds_until(
        "the version left to the other team (not taken over without force)",
        || async { version().await.as_deref() == Some("0.7.22") },
        "two more refused applies",
        || async { agent.errors(&contested, "conflict").await >= refused + 2.0 },
    )
    .await;
    assert!(f.audit_all().iter().any(|e| e.cluster == contested
        && e.verb == "apply"
        && e.code == 409
        && e.name.as_deref() == Some("atlas-operator")));

    f.put(&fleet("default").force(true));
    agent.wait_converged(&names, 1).await;
    assert_eq!(version().await.as_deref(), Some("0.7.23"));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_relist_without_writing_and_changes_still_arrive() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.put(&app(&names[0]));
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names[..1], 1).await;
    // The pass that saw the last watch events (Usage ready) ends first; then count.
    agent.wait_passes(&names[0], 1).await;
    let before = f.audit_all().len();
    let lists = f.sim.sim.requests.snapshot()["list"];
    let mut passes = Vec::new();
    for name in &names {
        passes.push(agent.passes(name).await);
        f.expire_watches(name).await;
    }
    assert_holds_until(
        "no write after the 410s",
        || async { f.audit_all().len() == before },
        "a relist of each cluster and two passes after it",
        || async {
            let mut done = f.sim.sim.requests.snapshot()["list"] >= lists + names.len() as u64;
            for (name, before) in names.iter().zip(&passes) {
                done &= agent.passes(name).await >= before + 2.0;
            }
            done
        },
    )
    .await;
    let report = agent.report().await;
    assert!(names.iter().all(|n| report.clusters[n].reachable));
    // The new watches see new work.
    f.put(&app(&names[1]));
    agent.wait_converged(&names, 1).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_two_seconds_of_latency_does_not_hold_the_others_back() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (slow, fast) = (names[0].clone(), names[1..].to_vec());
    f.faults(&slow, json!({"latencyMs": 2000})).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&fast, 1).await;
    let report = agent.report().await;
    assert!(
        !converged(&report, std::slice::from_ref(&slow), 1),
        "the slow cluster converged no later than the fast ones"
    );
    agent
        .wait_converged_within(&names, 1, Duration::from_secs(120))
        .await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

/// Down in the middle of applying, and for a whole minute: reported unreachable all along
/// (a resync pass with nothing to write does not take it back), the other clusters keep
/// converging meanwhile, and it converges once it is back (after kube's watch backoff of up
/// to 30 s, or the agent's probe on its next resync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_during_apply_for_a_minute_is_reported_and_converges_when_back() {
    const OUTAGE: Duration = Duration::from_secs(60);
    let f = SimFleet::start(3, ms(200)).await;
    let names = f.names();
    let flaky = names[0].clone();
    f.put(&app(&names[1]));
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names[1..2], 1).await;
    // Slow the cluster so that the outage lands among the applies of the new claim.
    f.faults(&flaky, json!({"latencyMs": 300})).await;
    f.put(&app(&flaky));
    eventually("the first apply", || async {
        (f.applies(&flaky) >= 1).then_some(())
    })
    .await;
    f.faults(&flaky, json!({"down": true})).await;
    let down_since = std::time::Instant::now();
    eventually("the outage reported", || async {
        let r = agent.status().await?;
        (!r.clusters.get(&flaky)?.reachable).then_some(())
    })
    .await;
    assert_reported_down(&agent, &flaky).await;
    f.put(&app(&names[2]));
    agent.wait_converged(&names[1..], 1).await;
    assert_reported_down(&agent, &flaky).await;
    // The rest of the minute, checked all along: the outage itself is the subject, and
    // the error that says why stays in the status the whole time (a pass that made no call
    // used to clear it for a moment).
    assert_quiet_for(
        "the cluster reported down, with its error, throughout the outage",
        OUTAGE.saturating_sub(down_since.elapsed()),
        || async { reported_down(&agent, &flaky).await.is_ok() },
    )
    .await;
    assert_reported_down(&agent, &flaky).await;
    f.faults(&flaky, json!({})).await;
    agent.wait_converged(&names, 1).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

/// A cluster down for a moment comes back with nothing changed: its watches open again
/// where they left off and bring no event. It is reported reachable at once, its error
/// cleared, though its next resync is an hour away; and nothing is written to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_back_from_an_outage_is_reported_reachable_at_once_whatever_the_resync() {
    let f = SimFleet::start(1, ms(200)).await;
    let name = f.names()[0].clone();
    f.put(&app(&name));
    let agent = f
        .start_agent(AgentOptions {
            resync: Some(Duration::from_secs(3600)),
            ..AgentOptions::default()
        })
        .await;
    agent.wait_converged(std::slice::from_ref(&name), 1).await;
    let written = f.audit(&name).len();
    f.faults(&name, json!({"down": true})).await;
    eventually("the outage reported", || async {
        reported_down(&agent, &name).await.ok()
    })
    .await;
    f.faults(&name, json!({})).await;
    eventually("the cluster reported back, its error cleared", || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&name)?;
        (c.reachable && c.last_error.is_none()).then_some(())
    })
    .await;
    assert_eq!(agent.reachable_metric(&name).await, Some(1.0));
    assert_eq!(f.audit(&name).len(), written, "{:?}", f.audit(&name));
    agent.stop().await;
    f.shutdown().await;
}

/// The simulator shut down and started again from its state file on the same address, as
/// an API server restarts on the same etcd: while it is down every cluster is reported
/// unreachable; once it is back the agent finds its objects as it left them and writes
/// nothing (no apply, no deletion), then serves a change as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_restarted_with_its_state_kept_is_found_converged_and_nothing_is_rewritten() {
    let f = persistent_fleet(3).await;
    let names = f.names();
    for name in &names[..2] {
        f.put(&app(name));
    }
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names[..2], 1).await;
    let address = f.sim.addr;
    let live =
        |f: &SimFleet| -> Vec<Vec<String>> { names.iter().map(|n| f.live_objects(n)).collect() };
    let kept = live(&f);
    assert!(
        kept[..2].iter().all(|objects| objects.len() == 3),
        "{kept:?}"
    );
    let (f, before) = f
        .restart(async {
            for name in &names {
                eventually("the outage reported", || async {
                    let r = agent.status().await?;
                    (!r.clusters.get(name)?.reachable).then_some(())
                })
                .await;
                assert_reported_down(&agent, name).await;
            }
        })
        .await;
    assert_eq!(f.sim.addr, address);
    assert_eq!(live(&f), kept);
    assert!(
        accepted_deletions(before.audit.entries(None)).is_empty(),
        "{:?}",
        before.audit.entries(None)
    );
    eventually("every cluster reachable again", || async {
        let r = agent.status().await?;
        names
            .iter()
            .all(|n| r.clusters.get(n).is_some_and(|c| c.reachable))
            .then_some(())
    })
    .await;
    agent.wait_converged(&names[..2], 1).await;
    // A few resync passes, so that a rewrite would have happened.
    agent
        .assert_holds_for_passes("no write after the restart", &names[0], 3, || async {
            f.audit_all().is_empty()
        })
        .await;
    let requests = f.sim.sim.requests.snapshot();
    assert!(
        requests["list"] + requests["watch"] + requests["get"] > 0,
        "the agent never read the restarted simulator: {requests:?}"
    );
    assert!(
        WRITE_VERBS.iter().all(|v| requests[v] == 0),
        "writes after the restart: {requests:?}\n{:?}",
        f.audit_all()
    );
    assert!(f.audit_all().is_empty(), "{:?}", f.audit_all());
    // The restarted simulator serves new work as before.
    f.put(&app(&names[2]));
    agent.wait_converged(&names, 1).await;
    assert_eq!(f.applies(&names[0]), 0);
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}

/// The simulator restarted from an older copy of its state, as an API server on an etcd
/// restored from a backup taken before the claims: the agent's watches are ahead of the
/// store (504 Too large resource version), so it has to relist to see that its objects
/// are gone, and apply them again. Nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_restored_from_an_older_backup_gets_its_objects_applied_again() {
    let f = persistent_fleet(2).await;
    let state = f.sim_dir().join("state.json");
    let backup = f.sim_dir().join("backup.json");
    std::fs::copy(&state, &backup).unwrap();
    f.claim_everywhere();
    let names = f.names();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let (f, before) = f
        .restart(async {
            std::fs::copy(&backup, &state).unwrap();
        })
        .await;
    assert!(names.iter().all(|n| f.live_objects(n).is_empty()));
    eventually("the objects applied again", || async {
        names
            .iter()
            .all(|n| f.live_objects(n).len() == 3)
            .then_some(())
    })
    .await;
    agent.wait_converged(&names, 1).await;
    assert!(names.iter().all(|n| f.applies(n) >= 3));
    let deleted = [
        accepted_deletions(before.audit.entries(None)),
        f.deletions(),
    ];
    assert!(deleted.iter().all(Vec::is_empty), "{deleted:?}");
    agent.stop().await;
    f.shutdown().await;
}

/// A simulated fleet keeping its state file, with bookmarks frequent enough that the
/// agent's watches stand at the latest resourceVersion when the simulator stops.
async fn persistent_fleet(clusters: usize) -> SimFleet {
    SimFleet::start_persistent(SimConfig {
        clusters,
        ready_after: ms(200),
        bookmark_interval: ms(200),
        ..SimConfig::default()
    })
    .await
}

/// Whether the agent reports `cluster` down (unreachable, with an error), in its status
/// and its metrics; what it reports instead when not.
async fn reported_down(agent: &Endpoint, cluster: &str) -> Result<(), String> {
    let report = agent.report().await;
    let status = &report.clusters[cluster];
    if status.last_error.is_none() {
        return Err(format!("{cluster}: no last error: {status:?}"));
    }
    reported_unreachable(agent, cluster).await
}

/// Whether the agent reports `cluster` unreachable, in its status and its metrics.
async fn reported_unreachable(agent: &Endpoint, cluster: &str) -> Result<(), String> {
    let report = agent.report().await;
    let status = &report.clusters[cluster];
    if status.reachable {
        return Err(format!("{cluster}: reachable: {status:?}"));
    }
    let m = agent.metrics().await;
    match metric(&m, "psql_fleet_cluster_reachable", &[("cluster", cluster)]) {
        Some(0.0) => Ok(()),
        other => Err(format!("{cluster}: psql_fleet_cluster_reachable {other:?}")),
    }
}

async fn assert_reported_down(agent: &Endpoint, cluster: &str) {
    if let Err(reported) = reported_down(agent, cluster).await {
        panic!("expected {cluster} reported down; {reported}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_git_remote_keeps_the_last_good_revision_and_a_force_push_is_served() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.put(&app(&names[0]));
    // The fleet directory is the working copy of the repository served.
    let repo = FleetRepo::in_dir(f.fleet_dir());
    repo.commit("one claim");
    let daemon = repo.serve();
    let port = daemon.port;
    let agent = f.start_agent(AgentOptions::git(git_url(&daemon))).await;
    agent.wait_converged(&names[..1], 1).await;
    let first = agent.report().await.source.revision.unwrap();

    drop(daemon);
    let report = eventually("the unreachable remote reported", || async {
        let r = agent.status().await?;
        r.source.last_error.is_some().then_some(r)
    })
    .await;
    assert_eq!(report.source.revision.as_deref(), Some(first.as_str()));
    assert!(report
        .source
        .last_error
        .as_deref()
        .unwrap()
        .contains("127.0.0.1"));
    let applies = f.applies(&names[0]);
    agent
        .assert_holds_for_passes(
            "nothing rewritten while the remote is away",
            &names[0],
            2,
            || async { f.applies(&names[0]) == applies },
        )
        .await;
    assert!(converged(&agent.report().await, &names[..1], 1));

    // History rewritten: the one commit replaced by one with a claim on both clusters.
    let daemon = Daemon::start_on(repo.base(), port);
    f.put(&app(&names[1]));
    repo.amend("two claims");
    agent.wait_converged(&names, 1).await;
    let report = agent.report().await;
    assert_ne!(report.source.revision.as_deref(), Some(first.as_str()));
    assert_eq!(report.source.last_error, None, "the remote is back");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    drop(daemon);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_a_cluster_that_went_down_is_unknown_not_ready_until_it_is_read_again() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (down, up) = (names[0].clone(), names[1].clone());
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    // Every counter of a cluster reads 0 before anything happened on it.
    let m = agent.metrics().await;
    for n in &names {
        assert_eq!(
            metric(&m, "psql_fleet_drift_corrections_total", &[("cluster", n)]),
            Some(0.0),
            "{m}"
        );
        assert_eq!(
            metric(
                &m,
                "psql_fleet_reconcile_errors_total",
                &[("cluster", n), ("reason", "conflict")]
            ),
            Some(0.0),
            "{m}"
        );
    }

    f.faults(&down, json!({"down": true})).await;
    let report = eventually("the down cluster's claim reported unknown", || async {
        let r = agent.status().await?;
        let claim = r.clusters.get(&down)?.claims.first()?;
        claim.unknown_since.is_some().then_some(r)
    })
    .await;
    let cluster = &report.clusters[&down];
    let claim = &cluster.claims[0];
    assert!(!claim.ready, "{claim:?}");
    assert_eq!(
        claim.unknown_since, cluster.unreachable_since,
        "{cluster:?}"
    );
    let reason = claim.reason.clone().unwrap_or_default();
    assert!(reason.contains("last seen ready"), "{reason}");
    assert!(report.clusters[&up].claims.iter().all(|c| c.ready));
    let table = report.to_table();
    assert!(
        table.contains("1/2 claims ready (1 unknown: cluster unreachable)"),
        "{table}"
    );
    let m = agent.metrics().await;
    let labels = [("cluster", down.as_str()), ("claim", "default/app")];
    assert_eq!(
        metric(&m, "psql_fleet_claim_ready", &labels),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "psql_fleet_release_not_ready_reason",
            &[
                ("cluster", down.as_str()),
                ("claim", "default/app"),
                ("component", "stackgres"),
                ("reason", "unreachable")
            ]
        ),
        Some(1.0),
        "{m}"
    );

    f.faults(&down, json!({})).await;
    let report = agent.wait_converged(&names, 1).await;
    let cluster = &report.clusters[&down];
    assert_eq!(cluster.unreachable_since, None);
    assert!(
        cluster
            .claims
            .iter()
            .all(|c| c.ready && c.unknown_since.is_none()),
        "{cluster:?}"
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.shutdown().await;
}
