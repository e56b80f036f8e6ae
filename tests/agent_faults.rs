//! The fault matrix: the agent against `psql-fleet sim` while the simulator injects faults
//! (its admin API, as `psql-fleet sim fault` does). For each fault: the end state is
//! right, nothing is deleted that should not be (the simulator's audit log), and status
//! and metrics say what happened while it happened.

use test_support as common;

use std::time::Duration;

use common::git::{git, Daemon};
use common::harness::{
    accepted_deletions, eventually, live_objects, metric, status, wait_converged, Agent,
    ChildAgent, SimFleet,
};
use kube_sim::requests::WRITE_VERBS;
use kube_sim::SimConfig;
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(60);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_down_at_start_is_reported_then_converges_once_up() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (down, others) = (names[0].clone(), names[1..].to_vec());
    f.faults(&down, json!({"down": true})).await;
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &others, 1, CONVERGE).await;
    let report = eventually("the down cluster reported", CONVERGE, || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&down)?;
        (!c.reachable && c.last_error.is_some()).then_some(r)
    })
    .await;
    let error = report.clusters[&down].last_error.clone().unwrap();
    assert!(error.contains(&down), "{error}");
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &down)]),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", &down), ("reason", "unreachable")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    assert!(f.audit().iter().all(|e| e.cluster != down));

    f.faults(&down, json!({})).await;
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &down)]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_does_not_validate_keeps_the_last_good_one_and_deletes_nothing() {
    let f = SimFleet::start(2, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let good = agent.status().await.unwrap().source.revision.unwrap();
    let before = live_objects(&f.sim, &names[0]);
    assert_eq!(before.len(), 3, "{before:?}");

    // Served, this revision would prune the claim of the first cluster.
    f.remove_claim(&names[0]);
    std::fs::write(
        f.fleet().join("claims/bad.yaml"),
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {name: bad}\nspec: {clusterName: nowhere}\n",
    )
    .unwrap();
    let report = eventually("the revision rejected", CONVERGE, || async {
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
            .any(|d| d.contains("claims/bad.yaml") && d.contains("spec.clusterName")),
        "{:?}",
        report.source.diagnostics
    );
    let m = agent.metrics().await.unwrap();
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    assert_eq!(live_objects(&f.sim, &names[0]), before);

    std::fs::remove_file(f.fleet().join("claims/bad.yaml")).unwrap();
    f.add_claim(&names[0]);
    eventually("the fixed revision served", CONVERGE, || async {
        let r = agent.status().await?;
        r.source.rejected.is_none().then_some(())
    })
    .await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_source_revision_valid", &[]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_server_errors_are_counted_and_the_fleet_still_converges() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    for name in &names {
        f.faults(name, json!({"errorRate": 0.3})).await;
    }
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names, 1, Duration::from_secs(90)).await;
    let m = agent.metrics().await.unwrap();
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
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_refused_until_the_kubeconfig_on_disk_changes() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    let (rotated, other) = (names[0].clone(), names[1].clone());
    f.add_claim(&other);
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, std::slice::from_ref(&other), 1, CONVERGE).await;
    wait_converged(&agent.server, std::slice::from_ref(&rotated), 0, CONVERGE).await;

    let answer = f
        .admin(
            "POST",
            &format!("/clusters/{rotated}/rotate-token"),
            json!({"writeKubeconfig": false}),
        )
        .await;
    let token = answer["token"].as_str().unwrap().to_string();
    f.admin(
        "POST",
        &format!("/clusters/{rotated}/expire-watches"),
        json!(null),
    )
    .await;
    // The fleet changes while the agent holds a dead token: nothing can be written.
    f.add_claim(&rotated);
    let report = eventually("the 401 reported", CONVERGE, || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&rotated)?;
        (!c.reachable && c.last_error.as_deref().is_some_and(|e| e.contains("401"))).then_some(r)
    })
    .await;
    assert!(report.clusters[&rotated].claims.iter().all(|c| !c.ready));
    let m = agent.metrics().await.unwrap();
    assert!(
        metric(
            &m,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", &rotated), ("reason", "forbidden")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !f.audit()
            .iter()
            .any(|e| e.cluster == rotated && e.verb == "apply" && e.code < 300),
        "written with a rotated token"
    );

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
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", &rotated)]),
        Some(1.0)
    );
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_the_atlas_and_stackgres_deletions_completes_the_prune_after_restart(
) {
    let f = SimFleet::start(2, ms(600)).await;
    f.claim_everywhere();
    let names = f.names();
    let (pruned, kept) = (names[0].clone(), names[1].clone());
    let logs = tempfile::tempdir().unwrap();
    let mut first = ChildAgent::start(&f, &logs.path().join("first.log")).await;
    wait_converged(&first.server, &names, 1, CONVERGE).await;

    f.remove_claim(&pruned);
    let is_atlas_delete = |e: &kube_sim::audit::AuditEntry| {
        e.cluster == pruned
            && e.verb == "delete"
            && e.name.as_deref() == Some("atlas-operator")
            && e.code < 300
    };
    eventually("the Atlas Release deleted", CONVERGE, || async {
        f.audit().iter().any(is_atlas_delete).then_some(())
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
    assert!(live_objects(&f.sim, &pruned)
        .iter()
        .any(|o| o.ends_with("/stackgres-operator")));
    f.faults(&pruned, json!({})).await;

    let second = ChildAgent::start(&f, &logs.path().join("second.log")).await;
    eventually("the prune completed", CONVERGE, || async {
        live_objects(&f.sim, &pruned).is_empty().then_some(())
    })
    .await;
    // Every delete request, refused ones included: each step once, in the safe order.
    let deletes: Vec<_> = f
        .audit()
        .into_iter()
        .filter(|e| e.cluster == pruned && e.verb == "delete")
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
    wait_converged(&second.server, std::slice::from_ref(&kept), 1, CONVERGE).await;
    let report = status(&second.server).await.unwrap();
    assert!(report.clusters[&pruned].claims.is_empty());
    drop(second);
    f.sim.shutdown().await;
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

    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names[1..], 1, CONVERGE).await;
    let report = eventually("the conflict reported", CONVERGE, || async {
        let r = agent.status().await?;
        let c = r.clusters.get(&contested)?;
        c.last_error
            .as_deref()
            .is_some_and(|e| e.contains("conflict"))
            .then_some(r)
    })
    .await;
    assert!(report.clusters[&contested].claims.iter().all(|c| !c.ready));
    let m = agent.metrics().await.unwrap();
    assert!(
        metric(
            &m,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", &contested), ("reason", "conflict")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        version().await.as_deref(),
        Some("0.7.22"),
        "taken over without force"
    );
    assert!(f.audit().iter().any(|e| e.cluster == contested
        && e.verb == "apply"
        && e.code == 409
        && e.name.as_deref() == Some("atlas-operator")));

    std::fs::write(
        f.fleet().join("fleet.yaml"),
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: default}\nspec: {force: true}\n",
    )
    .unwrap();
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    assert_eq!(version().await.as_deref(), Some("0.7.23"));
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_watches_relist_without_writing_and_changes_still_arrive() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.add_claim(&names[0]);
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names[..1], 1, CONVERGE).await;
    // Let the last watch events (Usage ready) settle, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = f.audit().len();
    for name in &names {
        f.admin(
            "POST",
            &format!("/clusters/{name}/expire-watches"),
            json!(null),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<_> = f.audit().into_iter().skip(before).collect();
    assert!(after.is_empty(), "the relist after 410 wrote: {after:?}");
    let report = agent.status().await.unwrap();
    assert!(names.iter().all(|n| report.clusters[n].reachable));
    // The new watches see new work.
    f.add_claim(&names[1]);
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_two_seconds_of_latency_does_not_hold_the_others_back() {
    let f = SimFleet::start(3, ms(200)).await;
    f.claim_everywhere();
    let names = f.names();
    let (slow, fast) = (names[0].clone(), names[1..].to_vec());
    f.faults(&slow, json!({"latencyMs": 2000})).await;
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &fast, 1, CONVERGE).await;
    let report = agent.status().await.unwrap();
    assert!(
        !common::harness::converged(&report, std::slice::from_ref(&slow), 1),
        "the slow cluster converged no later than the fast ones"
    );
    wait_converged(&agent.server, &names, 1, Duration::from_secs(120)).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
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
    f.add_claim(&names[1]);
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names[1..2], 1, CONVERGE).await;
    // Slow the cluster so that the outage lands among the applies of the new claim.
    f.faults(&flaky, json!({"latencyMs": 300})).await;
    f.add_claim(&flaky);
    eventually("the first apply", CONVERGE, || async {
        (f.applies(&flaky) >= 1).then_some(())
    })
    .await;
    f.faults(&flaky, json!({"down": true})).await;
    let down_since = std::time::Instant::now();
    eventually("the outage reported", CONVERGE, || async {
        let r = agent.status().await?;
        (!r.clusters.get(&flaky)?.reachable).then_some(())
    })
    .await;
    assert_reported_down(&agent, &flaky).await;
    f.add_claim(&names[2]);
    wait_converged(&agent.server, &names[1..], 1, CONVERGE).await;
    assert_reported_down(&agent, &flaky).await;
    tokio::time::sleep(OUTAGE.saturating_sub(down_since.elapsed())).await;
    assert_reported_down(&agent, &flaky).await;
    f.faults(&flaky, json!({})).await;
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
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
        f.add_claim(name);
    }
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names[..2], 1, CONVERGE).await;
    let address = f.sim.addr;
    let live = |f: &SimFleet| -> Vec<Vec<String>> {
        names.iter().map(|n| live_objects(&f.sim, n)).collect()
    };
    let kept = live(&f);
    assert!(
        kept[..2].iter().all(|objects| objects.len() == 3),
        "{kept:?}"
    );
    let (f, before) = f
        .restart(async {
            for name in &names {
                eventually("the outage reported", CONVERGE, || async {
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
    eventually("every cluster reachable again", CONVERGE, || async {
        let r = agent.status().await?;
        names
            .iter()
            .all(|n| r.clusters.get(n).is_some_and(|c| c.reachable))
            .then_some(())
    })
    .await;
    wait_converged(&agent.server, &names[..2], 1, CONVERGE).await;
    // A few resync passes, so that a rewrite would have happened.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = f.sim.sim.requests.snapshot();
    assert!(
        requests["list"] + requests["watch"] + requests["get"] > 0,
        "the agent never read the restarted simulator: {requests:?}"
    );
    assert!(
        WRITE_VERBS.iter().all(|v| requests[v] == 0),
        "writes after the restart: {requests:?}\n{:?}",
        f.audit()
    );
    assert!(f.audit().is_empty(), "{:?}", f.audit());
    // The restarted simulator serves new work as before.
    f.add_claim(&names[2]);
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    assert_eq!(f.applies(&names[0]), 0);
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    f.sim.shutdown().await;
}

/// The simulator restarted from an older copy of its state, as an API server on an etcd
/// restored from a backup taken before the claims: the agent's watches are ahead of the
/// store (504 Too large resource version), so it has to relist to see that its objects
/// are gone, and apply them again. Nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulator_restored_from_an_older_backup_gets_its_objects_applied_again() {
    let f = persistent_fleet(2).await;
    let state = f.sim_dir.path().join("state.json");
    let backup = f.sim_dir.path().join("backup.json");
    std::fs::copy(&state, &backup).unwrap();
    f.claim_everywhere();
    let names = f.names();
    let agent = Agent::start(f.config());
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let (f, before) = f
        .restart(async {
            std::fs::copy(&backup, &state).unwrap();
        })
        .await;
    assert!(names.iter().all(|n| live_objects(&f.sim, n).is_empty()));
    eventually("the objects applied again", CONVERGE, || async {
        names
            .iter()
            .all(|n| live_objects(&f.sim, n).len() == 3)
            .then_some(())
    })
    .await;
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    assert!(names.iter().all(|n| f.applies(n) >= 3));
    let deleted = [
        accepted_deletions(before.audit.entries(None)),
        f.deletions(),
    ];
    assert!(deleted.iter().all(Vec::is_empty), "{deleted:?}");
    agent.stop().await;
    f.sim.shutdown().await;
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

async fn assert_reported_down(agent: &Agent, cluster: &str) {
    let report = agent.status().await.unwrap();
    let status = &report.clusters[cluster];
    assert!(
        !status.reachable && status.last_error.is_some(),
        "{status:?}"
    );
    let m = agent.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "psql_fleet_cluster_reachable", &[("cluster", cluster)]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_git_remote_keeps_the_last_good_revision_and_a_force_push_is_served() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.add_claim(&names[0]);
    let repos = tempfile::tempdir().unwrap();
    let work = f.fleet();
    git(work, &["init", "-q", "-b", "main"]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "one claim"]);
    git(
        repos.path(),
        &["clone", "-q", "--bare", work.to_str().unwrap(), "fleet.git"],
    );
    git(
        work,
        &[
            "remote",
            "add",
            "origin",
            repos.path().join("fleet.git").to_str().unwrap(),
        ],
    );
    let daemon = Daemon::start(repos.path());
    let port = daemon.port;
    let config = common::harness::config(
        psql_fleet::source::SourceSpec::Git(format!("git://127.0.0.1:{port}/fleet.git")),
        f.sim_dir.path(),
        repos.path().join("cache"),
    );
    let agent = Agent::start(config);
    wait_converged(&agent.server, &names[..1], 1, CONVERGE).await;
    let first = agent.status().await.unwrap().source.revision.unwrap();

    drop(daemon);
    let report = eventually("the unreachable remote reported", CONVERGE, || async {
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        f.applies(&names[0]),
        applies,
        "rewritten while the remote was away"
    );
    assert!(common::harness::converged(
        &agent.status().await.unwrap(),
        &names[..1],
        1
    ));

    // History rewritten: the one commit replaced by one with a claim on both clusters.
    let daemon = Daemon::start_on(repos.path(), port);
    f.add_claim(&names[1]);
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "--amend", "-m", "two claims"]);
    git(work, &["push", "-q", "--force", "origin", "main"]);
    wait_converged(&agent.server, &names, 1, CONVERGE).await;
    let report = agent.status().await.unwrap();
    assert_ne!(report.source.revision.as_deref(), Some(first.as_str()));
    assert_eq!(report.source.last_error, None, "the remote is back");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());
    agent.stop().await;
    drop(daemon);
    f.sim.shutdown().await;
}
