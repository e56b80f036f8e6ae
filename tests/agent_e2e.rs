//! End to end: the agent (`agent::run`, in-process) against the simulator, each test
//! asserting the end state and the simulator's audit log of mutating requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fleet_core::api::Release;
use fleet_core::model::fleet::DriftPolicy;
use fleet_core::testing::{claim, claims_file, cluster, fleet, Claim, Document, Fleet};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use test_support::audit::{
    assert_pruned_in_safe_order, deletes, describe, object_writes, safe_order, RELEASES, USAGES,
};
use test_support::files::{git_url, FleetRepo};
use test_support::{assert_quiet_for, until, Agent, AgentOptions, ProcessOptions, SimFleet};

/// Claim `name` for `cluster` in a namespace of its own, also `name`, its charts installed
/// into that namespace too: two claims on one cluster need two namespaces for their
/// Releases, and two for their Helm releases, since the Release names are fixed.
fn own(name: &str, cluster: &str) -> Claim {
    claim(name, cluster).namespace(name).install_namespace(name)
}

/// The fleet's own settings, named as a fleet without `fleet.yaml` is (`default`), so
/// writing them changes no inventory label.
fn settings() -> Fleet {
    fleet("default")
}

fn ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// One simulated cluster under drift policy `drift` and one claim, brought to ready by a
/// running agent; returns the fleet, the agent, the cluster's name and a client for it.
async fn converged(
    claim_name: &str,
    drift: DriftPolicy,
    ready_after: Duration,
) -> (SimFleet, Agent, String, kube::Client) {
    let f = SimFleet::start(1, ready_after).await;
    let name = f.names[0].clone();
    f.put(&cluster(&name).drift(drift));
    f.add_claim(&own(claim_name, &name)).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&name, 1)]).await;
    let client = f.client(&name).await;
    (f, agent, name, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_is_created_only_after_both_releases_are_ready() {
    let ready_after = Duration::from_millis(800);
    let f = SimFleet::start(1, ready_after).await;
    let name = f.names[0].clone();
    f.add_claim(&own("gate", &name)).await;
    // Every change the cluster commits, in order, from before the agent starts.
    let sim = f.sim.sim.clone();
    let mut changes = sim.state(sim.slot(&name).unwrap()).store().subscribe();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&name, 1)]).await;
    let summary = agent.summary().await;
    assert_eq!((summary.clusters.total, summary.clusters.reachable), (1, 1));
    assert_eq!(
        (summary.claims.total, summary.claims.ready_with_usage),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(summary.revision, agent.report().await.source.revision);

    let mut releases: BTreeMap<String, bool> = BTreeMap::new();
    let mut usage_added = false;
    while let Ok(change) = changes.try_recv() {
        let kind = sim.shared.registry[change.key.res].kind.as_str();
        match kind {
            "Release" => {
                releases.insert(change.key.name.clone(), ready(&change.object));
            }
            "Usage" if !usage_added => {
                usage_added = true;
                assert_eq!(
                    releases.len(),
                    2,
                    "the Usage came before both Releases existed"
                );
                assert!(
                    releases.values().all(|r| *r),
                    "the Usage came while a Release was not Ready: {releases:?}"
                );
            }
            _ => {}
        }
    }
    assert!(usage_added, "the Usage was never created");

    let audit = f.audit(&name);
    let writes = describe(&object_writes(&audit));
    assert_eq!(
        writes.len(),
        3,
        "two Release applies, then one Usage apply: {writes:?}"
    );
    assert!(writes[..2]
        .iter()
        .all(|w| w.starts_with(&format!("apply {RELEASES} gate/"))));
    assert_eq!(
        writes[2],
        format!("apply {USAGES} gate/gate-delete-atlas-operator-before-stackgres-operator")
    );
    assert!(audit.iter().all(|e| e.code < 300), "{audit:?}");
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let f = SimFleet::start(2, Duration::from_millis(300)).await;
    let names = f.names.clone();
    for n in &names {
        f.add_claim(&own("one", n)).await;
        f.add_claim(&own("two", n)).await;
    }
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&names[0], 2), (&names[1], 2)]).await;
    // The passes that applied the last objects end first.
    for n in &names {
        agent.wait_passes(n, 1).await;
    }
    let before: Vec<usize> = names.iter().map(|n| f.audit(n).len()).collect();
    let unchanged = || {
        names
            .iter()
            .zip(&before)
            .all(|(n, count)| f.audit(n).len() == *count)
    };
    // The agent resyncs every second: passes of each cluster with nothing to do.
    let mut targets = Vec::new();
    for n in &names {
        targets.push(agent.passes(n).await + 4.0);
    }
    test_support::assert_holds_until(
        "no write in steady state",
        || async { unchanged() },
        "four more passes of each cluster",
        || async {
            let mut done = true;
            for (n, target) in names.iter().zip(&targets) {
                done &= agent.passes(n).await >= *target;
            }
            done
        },
    )
    .await;
    for n in &names {
        let audit = f.audit(n);
        assert_eq!(object_writes(&audit).len(), 6, "{n}: {audit:?}");
    }
    agent.stop().await;
    f.shutdown().await;
}

/// `--resync-interval` longer than `--interval`: once the last events are reconciled, no
/// pass is replayed before the resync is due (at the tests' resync, one would be every
/// second here), and a hand edit the watch sees is still corrected at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_resync_replays_no_pass_while_idle_and_a_change_is_reconciled_at_once() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("one", &name)).await;
    let agent = f
        .start_agent(AgentOptions {
            resync: Some(Duration::from_secs(3600)),
            ..AgentOptions::default()
        })
        .await;
    agent.wait_ready(&[(&name, 1)]).await;
    let quiet = Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settled = agent.passes(&name).await;
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "passes kept being replayed ({settled} so far)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = agent.passes(&name).await;
        if now != settled {
            settled = now;
            since = Instant::now();
        }
    }
    // A hand edit reaches the agent only through its watch.
    let client = f.client(&name).await;
    take_rollback_limit(&client, "one").await;
    until("the edit to be undone", || async {
        rollback_limit(&client, "one").await == Some(3)
    })
    .await;
    // The pass is counted once the server's answer is in, just after the edit is undone.
    until("the correcting pass to be counted", || async {
        agent.passes(&name).await > settled
    })
    .await;
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_computes_and_reports_and_writes_nothing() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("dry", &name)).await;
    let before = f.audit(&name).len();
    let agent = f
        .start_agent(AgentOptions {
            dry_run: true,
            ..AgentOptions::default()
        })
        .await;
    let report = agent
        .wait_for("a dry-run pass", |r| {
            r.clusters
                .get(&name)
                .is_some_and(|c| c.reconciled && c.claims.len() == 1)
        })
        .await;
    assert!(report.dry_run);
    let claim = &report.clusters[&name].claims[0];
    assert_eq!(claim.claim, "dry/dry");
    assert!(!claim.ready);
    assert!(
        claim
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("does not exist"),
        "{claim:?}"
    );
    assert_eq!(
        agent
            .metric(
                "psql_fleet_claim_ready",
                &[("claim", "dry/dry"), ("cluster", &name)]
            )
            .await,
        Some(0.0)
    );
    agent
        .assert_holds_for_passes("no write in a dry run", &name, 3, || async {
            f.audit(&name).len() == before
        })
        .await;
    agent.stop().await;
    f.shutdown().await;
}

fn releases(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<Release>(&()),
    )
}

/// The reasons of the Events written in `namespace`.
async fn events(client: &kube::Client, namespace: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events.list(&ListParams::default()).await.unwrap().items
}

async fn event_reasons(client: &kube::Client, namespace: &str) -> Vec<String> {
    events(client, namespace)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// The messages of the Events of `reason` in `namespace`.
async fn event_messages(client: &kube::Client, namespace: &str, reason: &str) -> Vec<String> {
    events(client, namespace)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// Drifts the agent found on `cluster` made by `manager` (kubectl, helm, other, unknown).
async fn drifts_by(agent: &Agent, cluster: &str, manager: &str) -> f64 {
    agent
        .metric(
            "psql_fleet_drift_found_total",
            &[("cluster", cluster), ("manager", manager)],
        )
        .await
        .unwrap_or(0.0)
}

/// Drift corrections the agent counted on `cluster`.
async fn corrections(agent: &Agent, cluster: &str) -> f64 {
    agent
        .metric(
            "psql_fleet_drift_corrections_total",
            &[("cluster", cluster)],
        )
        .await
        .unwrap_or(0.0)
}

/// Someone takes the StackGres Release's rollbackLimit over (to 7) with server-side apply,
/// as `kubectl apply --server-side --force-conflicts` would: the field now belongs to them.
async fn take_rollback_limit(client: &kube::Client, namespace: &str) {
    let edit = serde_json::json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
        "metadata": {"name": "stackgres-operator", "namespace": namespace},
        "spec": {"rollbackLimit": 7}
    });
    releases(client, namespace)
        .patch(
            "stackgres-operator",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&edit),
        )
        .await
        .unwrap();
}

async fn rollback_limit(client: &kube::Client, namespace: &str) -> Option<i64> {
    release_rollback_limit(client, namespace, "stackgres-operator").await
}

async fn release_rollback_limit(
    client: &kube::Client,
    namespace: &str,
    release: &str,
) -> Option<i64> {
    releases(client, namespace).get(release).await.ok()?.data["spec"]["rollbackLimit"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_is_corrected_and_counted_and_a_deleted_release_recreated() {
    let (f, agent, name, client) =
        converged("edited", DriftPolicy::Correct, Duration::from_millis(300)).await;
    assert_eq!(corrections(&agent, &name).await, 0.0);

    let mark = f.audit(&name).len();
    take_rollback_limit(&client, "edited").await;
    until("the edit to be undone", || async {
        rollback_limit(&client, "edited").await == Some(3)
    })
    .await;
    until("the correction to be counted", || async {
        corrections(&agent, &name).await >= 1.0
    })
    .await;
    let after: Vec<String> = describe(&object_writes(&f.audit(&name)[mark..]));
    assert!(
        after.contains(&format!("apply {RELEASES} edited/stackgres-operator")),
        "{after:?}"
    );
    assert!(f.audit(&name)[mark..].iter().all(|e| e.code < 300));
    // The Event is written after the correction is counted, and names who made the drift.
    until("a DriftCorrected Event", || async {
        event_reasons(&client, "edited")
            .await
            .contains(&"DriftCorrected".to_string())
    })
    .await;
    let messages = event_messages(&client, "edited", "DriftCorrected").await;
    assert!(
        messages
            .iter()
            .any(|m| m.contains("modified by kubectl at ") && m.contains("spec.rollbackLimit")),
        "{messages:?}"
    );
    // Each Event names the replica that reported it (this process: the agent runs in it).
    let pid = format!("pid {}", std::process::id());
    let ours: Vec<Event> = events(&client, "edited")
        .await
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("ops.com.ai/psql-fleet"))
        .collect();
    assert!(!ours.is_empty());
    for e in ours {
        let by = e.reporting_instance.unwrap_or_default();
        assert!(
            by.starts_with("psql-fleet on ") && by.ends_with(&pid),
            "{by}"
        );
    }
    assert!(drifts_by(&agent, &name, "kubectl").await >= 1.0);

    // `kubectl edit` (an update, not an apply) moves the field to its manager too.
    f.admin(
        "POST",
        &format!("/clusters/{name}/edit"),
        serde_json::json!({"name": "atlas-operator", "namespace": "edited",
            "patch": {"spec": {"rollbackLimit": 5}}}),
    )
    .await;
    until("the second edit to be undone", || async {
        release_rollback_limit(&client, "edited", "atlas-operator").await == Some(3)
    })
    .await;
    until("the second correction to be counted", || async {
        corrections(&agent, &name).await >= 2.0
    })
    .await;

    // A deleted Release comes back.
    let atlas = releases(&client, "edited")
        .get("atlas-operator")
        .await
        .unwrap();
    releases(&client, "edited")
        .delete("atlas-operator", &DeleteParams::default())
        .await
        .unwrap();
    until("the deleted Release to come back", || async {
        releases(&client, "edited")
            .get("atlas-operator")
            .await
            .is_ok_and(|r| {
                r.metadata.uid != atlas.metadata.uid && r.metadata.deletion_timestamp.is_none()
            })
    })
    .await;
    agent.wait_ready(&[(&name, 1)]).await;
    assert!(corrections(&agent, &name).await >= 3.0);
    // Who deletes an object leaves no trace on it.
    assert!(drifts_by(&agent, &name, "unknown").await >= 1.0);
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_policy_report_a_hand_edit_is_reported_and_left_alone() {
    let (f, agent, name, client) =
        converged("watched", DriftPolicy::Report, Duration::from_millis(300)).await;
    let mark = f.audit(&name).len();
    // `kubectl edit`: a merge patch as another field manager.
    f.admin(
        "POST",
        &format!("/clusters/{name}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "watched",
            "patch": {"spec": {"rollbackLimit": 7}}}),
    )
    .await;
    // It says who made it, and when, from the object's managedFields.
    let report = agent
        .wait_for("the drift to be reported", |r| {
            let drift = &r.clusters[&name].claims[0].drift;
            drift.len() == 1
                && drift[0].starts_with("stackgres: modified by kubectl-edit at ")
                && drift[0].ends_with(": spec.rollbackLimit")
        })
        .await;
    assert_eq!(report.clusters[&name].drift_policy, "report");
    assert_eq!(drifts_by(&agent, &name, "kubectl").await, 1.0);
    let detected = [
        ("claim", "watched/watched"),
        ("cluster", name.as_str()),
        ("component", "stackgres"),
    ];
    assert_eq!(
        agent.metric("psql_fleet_drift_detected", &detected).await,
        Some(1.0)
    );
    until("a DriftReported Event", || async {
        event_reasons(&client, "watched")
            .await
            .contains(&"DriftReported".to_string())
    })
    .await;
    // The edit upgrades the Release (Ready again after a while, the Usage kept
    // throughout); passes go on (a resync each second), and the edit stays.
    agent
        .wait_for("the upgraded Release to be ready", |r| {
            let c = &r.clusters[&name].claims[0];
            c.ready && c.usage_present && !c.drift.is_empty()
        })
        .await;
    agent
        .assert_holds_for_passes("the hand edit to stay", &name, 3, || async {
            rollback_limit(&client, "watched").await == Some(7)
        })
        .await;
    let audit = f.audit(&name);
    assert_eq!(
        describe(&object_writes(&audit[mark..])),
        vec![format!("patch {RELEASES} watched/stackgres-operator")],
        "only the hand edit"
    );
    assert_eq!(corrections(&agent, &name).await, 0.0);
    // Reported once, not on every pass.
    let reported = event_reasons(&client, "watched")
        .await
        .iter()
        .filter(|r| *r == "DriftReported")
        .count();
    assert_eq!(reported, 1);
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_over_a_new_revision_is_reported_and_forced_only_under_fleet_force() {
    let (f, agent, name, client) =
        converged("shared", DriftPolicy::Report, Duration::from_millis(300)).await;
    let version = |c: kube::Client| async move {
        releases(&c, "shared")
            .get("stackgres-operator")
            .await
            .unwrap()
            .data["spec"]["forProvider"]["chart"]["version"]
            .as_str()
            .map(String::from)
    };
    // Another manager takes the chart version over (left alone: policy report).
    let edit = serde_json::json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
        "metadata": {"name": "stackgres-operator", "namespace": "shared"},
        "spec": {"forProvider": {"chart": {"version": "1.17.4"}}}
    });
    releases(&client, "shared")
        .patch(
            "stackgres-operator",
            &PatchParams::apply("platform-team").force(),
            &Patch::Apply(&edit),
        )
        .await
        .unwrap();
    // Then the fleet pins another version: applying it conflicts with that manager.
    f.put(&settings().pin("stackgres-operator", "1.19.0"));
    let report = agent
        .wait_for("the conflict to be reported", |r| {
            r.clusters[&name]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("conflict with another field manager"))
        })
        .await;
    assert!(
        report.clusters[&name]
            .last_error
            .as_deref()
            .unwrap()
            .contains("stackgres-operator"),
        "{report:?}"
    );
    assert!(agent.errors(&name, "conflict").await >= 1.0);
    // Retried (a resync each second), counted each time, an Event once.
    until("the apply to be retried", || async {
        agent.errors(&name, "conflict").await >= 3.0
    })
    .await;
    let conflict_events = event_reasons(&client, "shared")
        .await
        .iter()
        .filter(|r| *r == "ApplyConflict")
        .count();
    assert_eq!(conflict_events, 1);
    assert_eq!(version(client.clone()).await.as_deref(), Some("1.17.4"));
    let refused = f
        .audit(&name)
        .into_iter()
        .filter(|e| {
            e.verb == "apply" && e.name.as_deref() == Some("stackgres-operator") && e.code == 409
        })
        .count();
    assert!(refused >= 1, "no refused apply in the audit log");

    // `force: true` in the fleet takes the field over.
    f.put(&settings().pin("stackgres-operator", "1.19.0").force(true));
    until("the forced apply", || async {
        version(client.clone()).await.as_deref() == Some("1.19.0")
    })
    .await;
    agent.wait_ready(&[(&name, 1)]).await;
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_claim_is_deleted_in_the_safe_order_even_a_clusters_only_one() {
    let f = SimFleet::start(2, Duration::from_millis(300)).await;
    let (a, b) = (f.names[0].clone(), f.names[1].clone());
    f.add_claim(&own("gone", &a)).await;
    f.add_claim(&own("kept", &a)).await;
    f.add_claim(&own("only", &b)).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&a, 2), (&b, 1)]).await;
    let client = f.client(&a).await;

    let mark = f.audit(&a).len();
    f.remove_doc(&own("gone", &a));
    agent
        .wait_for("the claim to leave the status", |r| {
            r.clusters[&a].claims.len() == 1
        })
        .await;
    until("its objects to be gone", || async {
        releases(&client, "gone")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    agent.wait_ready(&[(&a, 1)]).await;
    let audit = f.audit(&a);
    assert_pruned_in_safe_order(&audit[mark..], "gone");
    assert_eq!(
        object_writes(&audit[mark..]).len(),
        3,
        "nothing written to the kept claim"
    );
    let pruned = || async {
        event_reasons(&client, "gone")
            .await
            .iter()
            .filter(|r| *r == "Pruned")
            .count()
    };
    // Events are written after the deletions they tell of.
    until("three Pruned Events", || async { pruned().await >= 3 }).await;
    assert_eq!(pruned().await, 3, "one Pruned Event per object");

    let mark = f.audit(&b).len();
    f.remove_doc(&own("only", &b));
    agent
        .wait_for("the cluster's only claim to go", |r| {
            r.clusters[&b].claims.is_empty()
        })
        .await;
    until("its three deletes", || async {
        deletes(&f.audit(&b)[mark..]).len() == 3
    })
    .await;
    let audit = f.audit(&b);
    assert_pruned_in_safe_order(&audit[mark..], "only");
    agent.stop().await;
    f.shutdown().await;
}

/// Three claims on one cluster in one file; rewriting the file changes them at once.
async fn three_claims(f: &SimFleet, cluster: &str) {
    for n in ["a", "b", "c"] {
        f.namespace(cluster, n).await;
    }
    one_file(f, cluster, &["a", "b", "c"]);
}

fn one_file(f: &SimFleet, cluster: &str, names: &[&str]) {
    let claims = names.iter().map(|n| own(n, cluster)).collect();
    f.put(&claims_file(&format!("claims/{cluster}/all.yaml"), claims));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_prune_guard_refuses_until_allowed() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    three_claims(&f, &name).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    let served = agent.wait_ready(&[(&name, 3)]).await.source.revision;
    let mark = f.audit(&name).len();

    // Two of three claims at once: the revision is refused.
    one_file(&f, &name, &["c"]);
    agent.wait_mass_prune_refused(&served, 2, 3).await;
    assert!(agent.errors(&name, "mass_prune").await >= 1.0);
    agent
        .assert_holds_for_passes("the three claims to stay", &name, 2, || async {
            agent.report().await.clusters[&name].claims.len() == 3
        })
        .await;

    // A restarted agent has no earlier revision to compare with: the cluster's own guard
    // holds the prune back.
    agent.stop().await;
    let agent = f.start_agent(AgentOptions::default()).await;
    let report = agent
        .wait_for("the prune to be held back", |r| {
            r.clusters
                .get(&name)
                .is_some_and(|c| c.prune_refused.is_some())
        })
        .await;
    let held = report.clusters[&name].prune_refused.clone().unwrap();
    assert!(held.contains("--allow-mass-prune"), "{held}");
    assert!(agent.errors(&name, "mass_prune").await >= 1.0);
    agent
        .assert_holds_for_passes("no deletion", &name, 2, || async {
            deletes(&f.audit(&name)[mark..]).is_empty()
        })
        .await;

    // --allow-mass-prune lets it through.
    agent.stop().await;
    let agent = f
        .start_agent(AgentOptions {
            allow_mass_prune: true,
            ..AgentOptions::default()
        })
        .await;
    until("both claims to be pruned", || async {
        deletes(&f.audit(&name)[mark..]).len() == 6
    })
    .await;
    let report = agent.wait_ready(&[(&name, 1)]).await;
    assert!(report.clusters[&name].prune_refused.is_none());
    let audit = f.audit(&name);
    assert!(audit[mark..].iter().all(|e| e.code < 300));
    let done = deletes(&audit[mark..]);
    for ns in ["a", "b"] {
        let mine: Vec<String> = done
            .iter()
            .filter(|d| d.contains(&format!(" {ns}/")))
            .cloned()
            .collect();
        assert_eq!(mine, safe_order(ns));
    }
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_revision_is_reported_and_the_last_good_one_served_without_deletions() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("good", &name)).await;
    f.namespace(&name, "next").await;
    let agent = f.start_agent(AgentOptions::default()).await;
    let served = agent.wait_ready(&[(&name, 1)]).await.source.revision;
    let mark = f.audit(&name).len();

    // The file now holds another claim that does not validate: served, it would remove
    // "good".
    let file = own("good", &name).path();
    let bad = own("next", &name).raw_spec_field(
        "helmProviderConfigRef",
        serde_json::json!({"name": "x", "kind": "Foo"}),
    );
    f.put(&claims_file(&file, vec![bad]));
    let report = agent
        .wait_for("the revision to be rejected", |r| {
            r.source.rejected.is_some()
        })
        .await;
    assert!(
        report
            .source
            .rejected
            .as_deref()
            .unwrap()
            .contains("does not validate"),
        "{report:?}"
    );
    assert!(
        report
            .source
            .diagnostics
            .iter()
            .any(|d| d.contains(&file) && d.contains("spec.helmProviderConfigRef.kind")),
        "{:?}",
        report.source.diagnostics
    );
    assert_eq!(report.source.revision, served);
    assert_eq!(
        agent.metric("psql_fleet_source_revision_valid", &[]).await,
        Some(0.0)
    );
    agent
        .assert_holds_for_passes("no write", &name, 3, || async {
            object_writes(&f.audit(&name)[mark..]).is_empty()
        })
        .await;
    agent.wait_ready(&[(&name, 1)]).await;

    // The fix is served: "good" pruned, "next" created.
    f.put(&claims_file(&file, vec![own("next", &name)]));
    let report = agent
        .wait_for("the fixed revision to be ready", |r| {
            r.source.rejected.is_none()
                && r.clusters[&name].claims.len() == 1
                && r.clusters[&name].claims[0].claim == "next/next"
                && r.clusters[&name].claims[0].ready
                && r.clusters[&name].claims[0].usage_present
        })
        .await;
    assert_ne!(report.source.revision, served);
    assert_eq!(
        agent.metric("psql_fleet_source_revision_valid", &[]).await,
        Some(1.0)
    );
    until("the old claim to be pruned", || async {
        deletes(&f.audit(&name)[mark..]).len() == 3
    })
    .await;
    assert_eq!(deletes(&f.audit(&name)[mark..]), safe_order("good"));
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_pushed_to_a_git_daemon_is_applied() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("first", &name)).await;
    // The fleet directory becomes the working copy; a bare repository is served.
    let repo = FleetRepo::in_dir(f.fleet_dir());
    let first = repo.commit("first");
    let daemon = repo.serve();
    let agent = f.start_agent(AgentOptions::git(git_url(&daemon))).await;
    let report = agent.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(first.as_str()));
    assert!(report.source.source.starts_with("git://127.0.0.1:"));
    let mark = f.audit(&name).len();

    f.add_claim(&own("second", &name)).await;
    let pushed = repo.commit("second");
    let report = agent.wait_ready(&[(&name, 2)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(pushed.as_str()));
    assert_eq!(
        report.clusters[&name].applied_revision.as_deref(),
        Some(pushed.as_str())
    );
    let writes = describe(&object_writes(&f.audit(&name)[mark..]));
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(|w| w.contains(" second/")), "{writes:?}");
    agent.stop().await;
    f.shutdown().await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_fleet_cluster_and_claim_get_nothing_written() {
    let f = SimFleet::start(3, Duration::from_millis(300)).await;
    let (held, mixed, open) = (f.names[0].clone(), f.names[1].clone(), f.names[2].clone());
    f.put(&cluster(&held).suspend(true));
    f.add_claim(&own("held", &held)).await;
    f.add_claim(&own("paused", &mixed).suspended()).await;
    f.add_claim(&own("running", &mixed)).await;
    f.add_claim(&own("open", &open)).await;
    let marks: Vec<usize> = f.names.iter().map(|n| f.audit(n).len()).collect();
    let agent = f.start_agent(AgentOptions::default()).await;
    let report = agent
        .wait_for("the unsuspended claims to be ready", |r| {
            let ready = |cluster: &str, claim: &str| {
                r.clusters.get(cluster).is_some_and(|c| {
                    c.claims
                        .iter()
                        .any(|c| c.claim == claim && c.ready && c.usage_present)
                })
            };
            ready(&open, "open/open")
                && ready(&mixed, "running/running")
                && r.clusters.get(&held).is_some_and(|c| c.reconciled)
        })
        .await;
    assert_eq!(report.clusters[&held].suspended.as_deref(), Some("cluster"));
    let paused = report.clusters[&mixed]
        .claims
        .iter()
        .find(|c| c.claim == "paused/paused")
        .unwrap();
    assert!(paused.suspended && !paused.ready);
    // The suspended cluster makes no passes; the open one's are the clock.
    agent
        .assert_holds_for_passes(
            "nothing written to the suspended cluster",
            &open,
            2,
            || async { object_writes(&f.audit(&held)[marks[0]..]).is_empty() },
        )
        .await;
    let mixed_writes = describe(&object_writes(&f.audit(&mixed)[marks[1]..]));
    assert_eq!(mixed_writes.len(), 3, "{mixed_writes:?}");
    assert!(mixed_writes.iter().all(|w| w.contains(" running/")));

    // Fleet-wide: a new claim and a removed one change nothing while the fleet is held.
    f.namespace(&open, "later").await;
    let marks: Vec<usize> = f.names.iter().map(|n| f.audit(n).len()).collect();
    f.put(&settings().drift(DriftPolicy::Correct).suspend(true));
    agent
        .wait_for("the fleet to be suspended", |r| {
            r.clusters
                .values()
                .all(|c| c.suspended.as_deref() == Some("fleet"))
        })
        .await;
    f.put(&own("later", &open));
    f.remove_doc(&own("running", &mixed));
    agent
        .wait_for("the revision with the changes", |r| {
            r.clusters[&open].claims.len() == 2 && r.clusters[&mixed].claims.len() == 1
        })
        .await;
    // A suspended fleet makes no passes to count: a bounded window of two resyncs.
    assert_quiet_for(
        "nothing written while the fleet is suspended",
        Duration::from_secs(2),
        || async {
            f.names
                .iter()
                .zip(&marks)
                .all(|(n, mark)| f.audit(n).len() == *mark)
        },
    )
    .await;

    // Lifting it applies the backlog.
    f.put(&settings().drift(DriftPolicy::Correct));
    agent.wait_ready(&[(&open, 2)]).await;
    until("the removed claim to be pruned", || async {
        deletes(&f.audit(&mixed)).len() == 3
    })
    .await;
    assert!(object_writes(&f.audit(&held)).is_empty());
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_stopped_midway_is_completed_in_order_after_a_restart() {
    // Uninstalling takes a second, so the prune is stopped between its steps.
    let f = SimFleet::start(1, Duration::from_secs(2)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("gone", &name)).await;
    f.add_claim(&own("kept", &name)).await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_ready(&[(&name, 2)]).await;
    let mark = f.audit(&name).len();
    f.remove_doc(&own("gone", &name));
    until("the first prune step", || async {
        !deletes(&f.audit(&name)[mark..]).is_empty()
    })
    .await;
    agent.stop().await;
    let stopped = deletes(&f.audit(&name)[mark..]);
    assert!(
        stopped.len() < 3 && safe_order("gone").starts_with(&stopped),
        "{stopped:?}"
    );

    let agent = f.start_agent(AgentOptions::default()).await;
    until("the prune to complete", || async {
        deletes(&f.audit(&name)[mark..]).len() == 3
    })
    .await;
    let report = agent.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.clusters[&name].claims[0].claim, "kept/kept");
    let audit = f.audit(&name);
    assert_pruned_in_safe_order(&audit[mark..], "gone");
    assert_eq!(
        object_writes(&audit[mark..]).len(),
        3,
        "the kept claim untouched"
    );
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_change_upgrades_the_releases_and_keeps_the_usage() {
    let (f, agent, name, client) =
        converged("up", DriftPolicy::Correct, Duration::from_millis(500)).await;
    let mark = f.audit(&name).len();
    f.put(
        &settings()
            .drift(DriftPolicy::Correct)
            .pin("stackgres-operator", "1.19.0"),
    );
    until("the upgrade to be installed", || async {
        releases(&client, "up")
            .get("stackgres-operator")
            .await
            .is_ok_and(|r| r.data["status"]["atProvider"]["version"] == "1.19.0" && ready(&r.data))
    })
    .await;
    agent.wait_ready(&[(&name, 1)]).await;
    let writes = describe(&object_writes(&f.audit(&name)[mark..]));
    assert_eq!(
        writes,
        vec![format!("apply {RELEASES} up/stackgres-operator")],
        "one update, the Usage kept throughout"
    );
    let info = [
        ("claim", "up/up"),
        ("cluster", name.as_str()),
        ("component", "stackgres"),
        ("version", "1.19.0"),
    ];
    assert_eq!(
        agent.metric("psql_fleet_chart_version_info", &info).await,
        Some(1.0)
    );
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_for_a_missing_namespace_reports_the_servers_message_then_applies() {
    let f = SimFleet::start(1, Duration::from_millis(300)).await;
    let name = f.names[0].clone();
    // As Kubernetes does, the simulator refuses a namespaced create or apply into a
    // namespace that does not exist with 404 and a Status naming the namespace.
    let api = releases(&f.client(&name).await, "payments");
    let body: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": "probe", "namespace": "payments"},
    }))
    .unwrap();
    let answers = [
        api.create(&Default::default(), &body).await.map(|_| ()),
        api.patch("probe", &PatchParams::apply("probe"), &Patch::Apply(&body))
            .await
            .map(|_| ()),
    ];
    for answer in answers {
        match answer {
            Err(kube::Error::Api(s)) => assert_eq!(
                (s.code, s.reason.as_str(), s.message.as_str()),
                (404, "NotFound", r#"namespaces "payments" not found"#)
            ),
            other => panic!("expected 404 NotFound, got {other:?}"),
        }
    }

    f.put(&own("payments", &name));
    let agent = f.start_agent(AgentOptions::default()).await;
    agent
        .wait_for("the missing namespace in the cluster's last error", |r| {
            r.clusters
                .get(&name)
                .and_then(|c| c.last_error.as_deref())
                .is_some_and(|e| e.contains(r#"404 NotFound: namespaces "payments" not found"#))
        })
        .await;
    assert!(!object_writes(&f.audit(&name)).is_empty());
    // The failure persists: retries follow the backoff (0.5 s doubling, jittered down to
    // half), not the 1 s resync. After the first two retries (two applies a pass), the
    // next six seconds hold at most three passes; on every resync they would hold six.
    until("the first two retries", || async {
        object_writes(&f.audit(&name)).len() >= 6
    })
    .await;
    let mark = f.audit(&name).len();
    assert_quiet_for(
        "at most three passes (six applies) in 6 s",
        Duration::from_secs(6),
        || async { object_writes(&f.audit(&name)[mark..]).len() <= 6 },
    )
    .await;
    // Once the namespace is there, a retry applies the claim.
    f.namespace(&name, "payments").await;
    let report = agent.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.clusters[&name].last_error, None);
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_prune_exits_zero_and_a_restart_completes_in_the_safe_order() {
    // Uninstalling takes a second, so SIGTERM lands while the prune is under way, and the
    // new claim's Usage waits for its Releases, so applies are under way too.
    let f = SimFleet::start(1, Duration::from_secs(2)).await;
    let name = f.names[0].clone();
    f.add_claim(&own("gone", &name)).await;
    f.add_claim(&own("kept", &name)).await;
    let mut agent = f.spawn_agent(ProcessOptions::default()).await;
    agent.wait_ready(&[(&name, 2)]).await;
    let mark = f.audit(&name).len();
    f.namespace(&name, "fresh").await;
    f.remove_doc(&own("gone", &name));
    f.put(&own("fresh", &name));
    until("the first prune step", || async {
        !deletes(&f.audit(&name)[mark..]).is_empty()
    })
    .await;
    agent.terminate();
    let exit = agent.wait(Duration::from_secs(60)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "after SIGTERM: {exit:?}\n{}",
        agent.log()
    );
    assert!(agent.log().contains("stopping"), "{}", agent.log());
    let stopped = deletes(&f.audit(&name)[mark..]);
    assert!(
        stopped.len() < 3 && safe_order("gone").starts_with(&stopped),
        "{stopped:?}"
    );

    let mut agent = f.spawn_agent(ProcessOptions::default()).await;
    until("the prune to complete", || async {
        deletes(&f.audit(&name)[mark..]).len() == 3
    })
    .await;
    let report = agent.wait_ready(&[(&name, 2)]).await;
    let claims: Vec<&str> = report.clusters[&name]
        .claims
        .iter()
        .map(|c| c.claim.as_str())
        .collect();
    assert_eq!(claims, ["fresh/fresh", "kept/kept"]);
    let audit = f.audit(&name);
    let after = &audit[mark..];
    // The only deletions are the removed claim's, in the safe order; the kept claim is
    // never written and the new one is applied whole.
    assert_pruned_in_safe_order(after, "gone");
    let writes = describe(&object_writes(after));
    assert!(!writes.iter().any(|w| w.contains(" kept/")), "{writes:?}");
    assert_eq!(
        writes.iter().filter(|w| w.contains(" fresh/")).count(),
        3,
        "{writes:?}"
    );
    agent.terminate();
    let exit = agent.wait(Duration::from_secs(60)).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    let kubeconfig = std::fs::read_to_string(f.sim.kubeconfig_path(&name)).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token:"))
        .map(|t| t.trim().trim_matches('"').to_string())
        .unwrap();
    assert!(
        token.len() > 8 && !agent.log().contains(&token),
        "the token was logged"
    );
    drop(agent);
    f.shutdown().await;
}
