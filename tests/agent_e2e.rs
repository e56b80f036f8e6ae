//! End to end: the agent (`agent::run`, in-process) against the simulator, each test
//! asserting the end state and the simulator's audit log of mutating requests.

use test_support as common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::{
    claim, claim_file, cluster, describe, fleet_yaml, object_writes, AgentOptions, E2e, RELEASES,
    USAGES,
};
use common::git::{git, Daemon};
use fleet_core::api::Release;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

fn ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// One simulated cluster with `spec_extra` in its `Cluster` file and one claim, brought to
/// ready by a running agent; returns the harness, the cluster's name and a client for it.
async fn converged(
    claim_name: &str,
    spec_extra: &str,
    ready_after: Duration,
) -> (E2e, String, kube::Client) {
    let mut e2e = E2e::start(1, ready_after).await;
    let name = e2e.names[0].clone();
    e2e.write(
        &format!("clusters/{name}.yaml"),
        &cluster(&name, spec_extra),
    );
    e2e.add_claim(claim_name, &name, &[]).await;
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&name, 1)]).await;
    let client = e2e.client(&name).await;
    (e2e, name, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_is_created_only_after_both_releases_are_ready() {
    let ready_after = Duration::from_millis(800);
    let mut e2e = E2e::start(1, ready_after).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("gate", &name, &[]).await;
    // Every change the cluster commits, in order, from before the agent starts.
    let sim = e2e.sim.sim.clone();
    let mut changes = sim.state(sim.slot(&name).unwrap()).store().subscribe();
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&name, 1)]).await;

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

    let audit = e2e.audit(&name);
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
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let mut e2e = E2e::start(2, Duration::from_millis(300)).await;
    let names = e2e.names.clone();
    for n in &names {
        e2e.add_claim("one", n, &[]).await;
        e2e.add_claim("two", n, &[]).await;
    }
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&names[0], 2), (&names[1], 2)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<usize> = names.iter().map(|n| e2e.audit(n).len()).collect();
    // The agent resyncs every second: five passes per cluster with nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (n, count) in names.iter().zip(before) {
        let audit = e2e.audit(n);
        assert_eq!(
            audit.len(),
            count,
            "{n}: writes in steady state: {:?}",
            &audit[count..]
        );
        assert_eq!(object_writes(&audit).len(), 6, "{n}: {audit:?}");
    }
    let passes = e2e
        .metric(&format!(
            "psql_fleet_reconcile_duration_seconds_count{{cluster=\"{}\"}}",
            names[0]
        ))
        .await
        .unwrap();
    assert!(passes >= 5.0, "resyncs did not run: {passes} passes");
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_computes_and_reports_and_writes_nothing() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("dry", &name, &[]).await;
    let before = e2e.audit(&name).len();
    e2e.start_agent(AgentOptions {
        dry_run: true,
        ..AgentOptions::default()
    })
    .await;
    let report = e2e
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
        e2e.metric(&format!(
            "psql_fleet_claim_ready{{claim=\"dry/dry\",cluster=\"{name}\"}}"
        ))
        .await,
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audit = e2e.audit(&name);
    assert_eq!(audit.len(), before, "dry run wrote: {:?}", &audit[before..]);
    e2e.shutdown().await;
}

fn releases(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<Release>(&()),
    )
}

/// The reasons of the Events written in `namespace`.
async fn event_reasons(client: &kube::Client, namespace: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
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
    let (e2e, name, client) = converged("edited", "", Duration::from_millis(300)).await;
    let corrections = format!("psql_fleet_drift_corrections_total{{cluster=\"{name}\"}}");
    assert_eq!(e2e.metric(&corrections).await.unwrap_or(0.0), 0.0);

    // Someone takes rollbackLimit over with server-side apply, as `kubectl apply
    // --server-side --force-conflicts` would: the field now belongs to them.
    let mark = e2e.audit(&name).len();
    let edit = serde_json::json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
        "metadata": {"name": "stackgres-operator", "namespace": "edited"},
        "spec": {"rollbackLimit": 7}
    });
    releases(&client, "edited")
        .patch(
            "stackgres-operator",
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(&edit),
        )
        .await
        .unwrap();
    e2e.eventually("the edit to be undone", || async {
        rollback_limit(&client, "edited").await == Some(3)
    })
    .await;
    e2e.eventually("the correction to be counted", || async {
        e2e.metric(&corrections).await.unwrap_or(0.0) >= 1.0
    })
    .await;
    let after: Vec<String> = describe(&object_writes(&e2e.audit(&name)[mark..]));
    assert!(
        after.contains(&format!("apply {RELEASES} edited/stackgres-operator")),
        "{after:?}"
    );
    assert!(e2e.audit(&name)[mark..].iter().all(|e| e.code < 300));
    // The Event is written after the correction is counted: wait for it too.
    e2e.eventually("a DriftCorrected Event", || async {
        event_reasons(&client, "edited")
            .await
            .contains(&"DriftCorrected".to_string())
    })
    .await;

    // `kubectl edit` (an update, not an apply) moves the field to its manager too.
    e2e.admin(
        "POST",
        &format!("/clusters/{name}/edit"),
        serde_json::json!({"name": "atlas-operator", "namespace": "edited",
            "patch": {"spec": {"rollbackLimit": 5}}}),
    )
    .await;
    e2e.eventually("the second edit to be undone", || async {
        release_rollback_limit(&client, "edited", "atlas-operator").await == Some(3)
    })
    .await;
    e2e.eventually("the second correction to be counted", || async {
        e2e.metric(&corrections).await.unwrap_or(0.0) >= 2.0
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
    e2e.eventually("the deleted Release to come back", || async {
        releases(&client, "edited")
            .get("atlas-operator")
            .await
            .is_ok_and(|r| {
                r.metadata.uid != atlas.metadata.uid && r.metadata.deletion_timestamp.is_none()
            })
    })
    .await;
    e2e.wait_ready(&[(&name, 1)]).await;
    assert!(e2e.metric(&corrections).await.unwrap() >= 3.0);
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_policy_report_a_hand_edit_is_reported_and_left_alone() {
    let (e2e, name, client) = converged(
        "watched",
        "  drift: {policy: report}\n",
        Duration::from_millis(300),
    )
    .await;
    let mark = e2e.audit(&name).len();
    // `kubectl edit`: a merge patch as another field manager.
    e2e.admin(
        "POST",
        &format!("/clusters/{name}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "watched",
            "patch": {"spec": {"rollbackLimit": 7}}}),
    )
    .await;
    let report = e2e
        .wait_for("the drift to be reported", |r| {
            r.clusters[&name].claims[0].drift
                == vec!["stackgres: modified: spec.rollbackLimit".to_string()]
        })
        .await;
    assert_eq!(report.clusters[&name].drift_policy, "report");
    let detected = format!(
        "psql_fleet_drift_detected{{claim=\"watched/watched\",cluster=\"{name}\",component=\"stackgres\"}}"
    );
    assert_eq!(e2e.metric(&detected).await, Some(1.0));
    e2e.eventually("a DriftReported Event", || async {
        event_reasons(&client, "watched")
            .await
            .contains(&"DriftReported".to_string())
    })
    .await;
    // The edit upgrades the Release (Ready again after a while, the Usage kept
    // throughout); passes go on (a resync each second), and the edit stays.
    e2e.wait_for("the upgraded Release to be ready", |r| {
        let c = &r.clusters[&name].claims[0];
        c.ready && c.usage_present && !c.drift.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rollback_limit(&client, "watched").await, Some(7));
    let audit = e2e.audit(&name);
    assert_eq!(
        describe(&object_writes(&audit[mark..])),
        vec![format!("patch {RELEASES} watched/stackgres-operator")],
        "only the hand edit"
    );
    let corrections = format!("psql_fleet_drift_corrections_total{{cluster=\"{name}\"}}");
    assert_eq!(e2e.metric(&corrections).await.unwrap_or(0.0), 0.0);
    // Reported once, not on every pass.
    let reported = event_reasons(&client, "watched")
        .await
        .iter()
        .filter(|r| *r == "DriftReported")
        .count();
    assert_eq!(reported, 1);
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_over_a_new_revision_is_reported_and_forced_only_under_fleet_force() {
    let (e2e, name, client) = converged(
        "shared",
        "  drift: {policy: report}\n",
        Duration::from_millis(300),
    )
    .await;
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
    e2e.write(
        "fleet.yaml",
        &fleet_yaml("  pins: {stackgres-operator: 1.19.0}\n"),
    );
    let conflicts =
        format!("psql_fleet_reconcile_errors_total{{cluster=\"{name}\",reason=\"conflict\"}}");
    let report = e2e
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
    assert!(e2e.metric(&conflicts).await.unwrap() >= 1.0);
    // Retried (a resync each second), counted each time, an Event once.
    e2e.eventually("the apply to be retried", || async {
        e2e.metric(&conflicts).await.unwrap_or(0.0) >= 3.0
    })
    .await;
    let conflict_events = event_reasons(&client, "shared")
        .await
        .iter()
        .filter(|r| *r == "ApplyConflict")
        .count();
    assert_eq!(conflict_events, 1);
    assert_eq!(version(client.clone()).await.as_deref(), Some("1.17.4"));
    let refused = e2e
        .audit(&name)
        .into_iter()
        .filter(|e| {
            e.verb == "apply" && e.name.as_deref() == Some("stackgres-operator") && e.code == 409
        })
        .count();
    assert!(refused >= 1, "no refused apply in the audit log");

    // `force: true` in the fleet takes the field over.
    e2e.write(
        "fleet.yaml",
        &fleet_yaml("  pins: {stackgres-operator: 1.19.0}\n  force: true\n"),
    );
    e2e.eventually("the forced apply", || async {
        version(client.clone()).await.as_deref() == Some("1.19.0")
    })
    .await;
    e2e.wait_ready(&[(&name, 1)]).await;
    e2e.shutdown().await;
}

fn deletes(entries: &[kube_sim::audit::AuditEntry]) -> Vec<String> {
    let writes = object_writes(entries);
    describe(&writes)
        .into_iter()
        .filter(|w| w.starts_with("delete "))
        .collect()
}

fn safe_order(ns: &str) -> Vec<String> {
    vec![
        format!("delete {RELEASES} {ns}/atlas-operator"),
        format!("delete {USAGES} {ns}/{ns}-delete-atlas-operator-before-stackgres-operator"),
        format!("delete {RELEASES} {ns}/stackgres-operator"),
    ]
}

/// Every write since the mark succeeded (StackGres was not refused by its Usage, so it was
/// deleted only once the Usage had gone), and the only deletions are `ns`'s claim's, in
/// the safe order.
fn assert_pruned_in_safe_order(after: &[kube_sim::audit::AuditEntry], ns: &str) {
    assert!(after.iter().all(|e| e.code < 300), "{after:?}");
    assert_eq!(deletes(after), safe_order(ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_claim_is_deleted_in_the_safe_order_even_a_clusters_only_one() {
    let mut e2e = E2e::start(2, Duration::from_millis(300)).await;
    let (a, b) = (e2e.names[0].clone(), e2e.names[1].clone());
    e2e.add_claim("gone", &a, &[]).await;
    e2e.add_claim("kept", &a, &[]).await;
    e2e.add_claim("only", &b, &[]).await;
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&a, 2), (&b, 1)]).await;
    let client = e2e.client(&a).await;

    let mark = e2e.audit(&a).len();
    e2e.remove(&claim_file("gone", &a));
    e2e.wait_for("the claim to leave the status", |r| {
        r.clusters[&a].claims.len() == 1
    })
    .await;
    e2e.eventually("its objects to be gone", || async {
        releases(&client, "gone")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    e2e.wait_ready(&[(&a, 1)]).await;
    let audit = e2e.audit(&a);
    assert_pruned_in_safe_order(&audit[mark..], "gone");
    assert_eq!(
        object_writes(&audit[mark..]).len(),
        3,
        "nothing written to the kept claim"
    );
    let pruned = event_reasons(&client, "gone")
        .await
        .iter()
        .filter(|r| *r == "Pruned")
        .count();
    assert_eq!(pruned, 3, "one Pruned Event per object");

    let mark = e2e.audit(&b).len();
    e2e.remove(&claim_file("only", &b));
    e2e.wait_for("the cluster's only claim to go", |r| {
        r.clusters[&b].claims.is_empty()
    })
    .await;
    e2e.eventually("its three deletes", || async {
        deletes(&e2e.audit(&b)[mark..]).len() == 3
    })
    .await;
    let audit = e2e.audit(&b);
    assert_pruned_in_safe_order(&audit[mark..], "only");
    e2e.shutdown().await;
}

/// Three claims on one cluster in one file; rewriting the file changes them at once.
async fn three_claims(e2e: &E2e, cluster: &str) {
    for n in ["a", "b", "c"] {
        e2e.namespace(cluster, n).await;
    }
    claims_file(e2e, cluster, &["a", "b", "c"]);
}

fn claims_file(e2e: &E2e, cluster: &str, names: &[&str]) {
    let docs: Vec<String> = names.iter().map(|n| claim(n, cluster, &[])).collect();
    e2e.write(&format!("claims/{cluster}/all.yaml"), &docs.join("---\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mass_prune_guard_refuses_until_allowed() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    three_claims(&e2e, &name).await;
    e2e.start_agent(AgentOptions::default()).await;
    let served = e2e.wait_ready(&[(&name, 3)]).await.source.revision;
    let mark = e2e.audit(&name).len();

    // Two of three claims at once: the revision is refused.
    claims_file(&e2e, &name, &["c"]);
    let report = e2e
        .wait_for("the revision to be refused", |r| {
            r.source.rejected.is_some()
        })
        .await;
    let rejected = report.source.rejected.unwrap();
    assert!(rejected.contains("mass-prune"), "{rejected}");
    assert!(
        rejected.contains("would remove 2 of 3 claims"),
        "{rejected}"
    );
    assert_eq!(report.source.revision, served);
    let refusals =
        format!("psql_fleet_reconcile_errors_total{{cluster=\"{name}\",reason=\"mass_prune\"}}");
    assert!(e2e.metric(&refusals).await.unwrap_or(0.0) >= 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(e2e.status().await.unwrap().clusters[&name].claims.len(), 3);

    // A restarted agent has no earlier revision to compare with: the cluster's own guard
    // holds the prune back.
    e2e.stop_agent().await;
    e2e.start_agent(AgentOptions::default()).await;
    let report = e2e
        .wait_for("the prune to be held back", |r| {
            r.clusters
                .get(&name)
                .is_some_and(|c| c.prune_refused.is_some())
        })
        .await;
    let held = report.clusters[&name].prune_refused.clone().unwrap();
    assert!(held.contains("--allow-mass-prune"), "{held}");
    assert!(e2e.metric(&refusals).await.unwrap_or(0.0) >= 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(deletes(&e2e.audit(&name)[mark..]).is_empty());

    // --allow-mass-prune lets it through.
    e2e.stop_agent().await;
    e2e.start_agent(AgentOptions {
        allow_mass_prune: true,
        ..AgentOptions::default()
    })
    .await;
    e2e.eventually("both claims to be pruned", || async {
        deletes(&e2e.audit(&name)[mark..]).len() == 6
    })
    .await;
    let report = e2e.wait_ready(&[(&name, 1)]).await;
    assert!(report.clusters[&name].prune_refused.is_none());
    let audit = e2e.audit(&name);
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
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_revision_is_reported_and_the_last_good_one_served_without_deletions() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("good", &name, &[]).await;
    e2e.namespace(&name, "next").await;
    e2e.start_agent(AgentOptions::default()).await;
    let served = e2e.wait_ready(&[(&name, 1)]).await.source.revision;
    let mark = e2e.audit(&name).len();

    // The file now holds another claim that does not validate: served, it would remove
    // "good".
    let file = claim_file("good", &name);
    let bad = claim("next", &name, &[]) + "  helmProviderConfigRef: {name: x, kind: Foo}\n";
    e2e.write(&file, &bad);
    let report = e2e
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
        e2e.metric("psql_fleet_source_revision_valid").await,
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(object_writes(&e2e.audit(&name)[mark..]).is_empty());
    e2e.wait_ready(&[(&name, 1)]).await;

    // The fix is served: "good" pruned, "next" created.
    e2e.write(&file, &claim("next", &name, &[]));
    let report = e2e
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
        e2e.metric("psql_fleet_source_revision_valid").await,
        Some(1.0)
    );
    e2e.eventually("the old claim to be pruned", || async {
        deletes(&e2e.audit(&name)[mark..]).len() == 3
    })
    .await;
    assert_eq!(deletes(&e2e.audit(&name)[mark..]), safe_order("good"));
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_pushed_to_a_git_daemon_is_applied() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("first", &name, &[]).await;
    // The fleet directory becomes the working copy; a bare repository is served.
    let base = tempfile::tempdir().unwrap();
    git(
        base.path(),
        &["init", "-q", "--bare", "-b", "main", "fleet.git"],
    );
    let bare = base.path().join("fleet.git").display().to_string();
    let work = e2e.fleet_dir().to_path_buf();
    git(&work, &["init", "-q", "-b", "main"]);
    let commit = |message: &str| {
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", message]);
        git(&work, &["push", "-q", &bare, "main"]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let first = commit("first");
    let daemon = Daemon::start(base.path());
    e2e.start_agent(AgentOptions {
        git: Some(format!("git://127.0.0.1:{}/fleet.git", daemon.port)),
        ..AgentOptions::default()
    })
    .await;
    let report = e2e.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(first.as_str()));
    assert!(report.source.source.starts_with("git://127.0.0.1:"));
    let mark = e2e.audit(&name).len();

    e2e.add_claim("second", &name, &[]).await;
    let pushed = commit("second");
    let report = e2e.wait_ready(&[(&name, 2)]).await;
    assert_eq!(report.source.revision.as_deref(), Some(pushed.as_str()));
    assert_eq!(
        report.clusters[&name].applied_revision.as_deref(),
        Some(pushed.as_str())
    );
    let writes = describe(&object_writes(&e2e.audit(&name)[mark..]));
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(|w| w.contains(" second/")), "{writes:?}");
    e2e.shutdown().await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_fleet_cluster_and_claim_get_nothing_written() {
    let mut e2e = E2e::start(3, Duration::from_millis(300)).await;
    let (held, mixed, open) = (
        e2e.names[0].clone(),
        e2e.names[1].clone(),
        e2e.names[2].clone(),
    );
    e2e.write(
        &format!("clusters/{held}.yaml"),
        &cluster(&held, "  suspend: true\n"),
    );
    e2e.add_claim("held", &held, &[]).await;
    e2e.add_claim(
        "paused",
        &mixed,
        &[("fleet.hops.ops.com.ai/suspend", "true")],
    )
    .await;
    e2e.add_claim("running", &mixed, &[]).await;
    e2e.add_claim("open", &open, &[]).await;
    let marks: Vec<usize> = e2e.names.iter().map(|n| e2e.audit(n).len()).collect();
    e2e.start_agent(AgentOptions::default()).await;
    let report = e2e
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(object_writes(&e2e.audit(&held)[marks[0]..]).is_empty());
    let mixed_writes = describe(&object_writes(&e2e.audit(&mixed)[marks[1]..]));
    assert_eq!(mixed_writes.len(), 3, "{mixed_writes:?}");
    assert!(mixed_writes.iter().all(|w| w.contains(" running/")));

    // Fleet-wide: a new claim and a removed one change nothing while the fleet is held.
    e2e.namespace(&open, "later").await;
    let marks: Vec<usize> = e2e.names.iter().map(|n| e2e.audit(n).len()).collect();
    e2e.write(
        "fleet.yaml",
        &fleet_yaml("  drift: {policy: correct}\n  suspend: true\n"),
    );
    e2e.wait_for("the fleet to be suspended", |r| {
        r.clusters
            .values()
            .all(|c| c.suspended.as_deref() == Some("fleet"))
    })
    .await;
    e2e.write(&claim_file("later", &open), &claim("later", &open, &[]));
    e2e.remove(&claim_file("running", &mixed));
    e2e.wait_for("the revision with the changes", |r| {
        r.clusters[&open].claims.len() == 2 && r.clusters[&mixed].claims.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (n, mark) in e2e.names.iter().zip(marks) {
        let audit = e2e.audit(n);
        assert!(
            audit[mark..].is_empty(),
            "{n}: written while suspended: {:?}",
            &audit[mark..]
        );
    }

    // Lifting it applies the backlog.
    e2e.write("fleet.yaml", &fleet_yaml("  drift: {policy: correct}\n"));
    e2e.wait_ready(&[(&open, 2)]).await;
    e2e.eventually("the removed claim to be pruned", || async {
        deletes(&e2e.audit(&mixed)).len() == 3
    })
    .await;
    assert!(object_writes(&e2e.audit(&held)).is_empty());
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_stopped_midway_is_completed_in_order_after_a_restart() {
    // Uninstalling takes a second, so the prune is stopped between its steps.
    let mut e2e = E2e::start(1, Duration::from_secs(2)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("gone", &name, &[]).await;
    e2e.add_claim("kept", &name, &[]).await;
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_ready(&[(&name, 2)]).await;
    let mark = e2e.audit(&name).len();
    e2e.remove(&claim_file("gone", &name));
    e2e.eventually("the first prune step", || async {
        !deletes(&e2e.audit(&name)[mark..]).is_empty()
    })
    .await;
    e2e.stop_agent().await;
    let stopped = deletes(&e2e.audit(&name)[mark..]);
    assert!(
        stopped.len() < 3 && safe_order("gone").starts_with(&stopped),
        "{stopped:?}"
    );

    e2e.start_agent(AgentOptions::default()).await;
    e2e.eventually("the prune to complete", || async {
        deletes(&e2e.audit(&name)[mark..]).len() == 3
    })
    .await;
    let report = e2e.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.clusters[&name].claims[0].claim, "kept/kept");
    let audit = e2e.audit(&name);
    assert_pruned_in_safe_order(&audit[mark..], "gone");
    assert_eq!(
        object_writes(&audit[mark..]).len(),
        3,
        "the kept claim untouched"
    );
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_change_upgrades_the_releases_and_keeps_the_usage() {
    let (e2e, name, client) = converged("up", "", Duration::from_millis(500)).await;
    let mark = e2e.audit(&name).len();
    e2e.write(
        "fleet.yaml",
        &fleet_yaml("  drift: {policy: correct}\n  pins: {stackgres-operator: 1.19.0}\n"),
    );
    e2e.eventually("the upgrade to be installed", || async {
        releases(&client, "up")
            .get("stackgres-operator")
            .await
            .is_ok_and(|r| r.data["status"]["atProvider"]["version"] == "1.19.0" && ready(&r.data))
    })
    .await;
    e2e.wait_ready(&[(&name, 1)]).await;
    let writes = describe(&object_writes(&e2e.audit(&name)[mark..]));
    assert_eq!(
        writes,
        vec![format!("apply {RELEASES} up/stackgres-operator")],
        "one update, the Usage kept throughout"
    );
    let info = format!(
        "psql_fleet_chart_version_info{{claim=\"up/up\",cluster=\"{name}\",component=\"stackgres\",version=\"1.19.0\"}}"
    );
    assert_eq!(e2e.metric(&info).await, Some(1.0));
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_for_a_missing_namespace_reports_the_servers_message_then_applies() {
    let mut e2e = E2e::start(1, Duration::from_millis(300)).await;
    let name = e2e.names[0].clone();
    // As Kubernetes does, the simulator refuses a namespaced create or apply into a
    // namespace that does not exist with 404 and a Status naming the namespace.
    let api = releases(&e2e.client(&name).await, "payments");
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

    e2e.write(
        &claim_file("payments", &name),
        &claim("payments", &name, &[]),
    );
    e2e.start_agent(AgentOptions::default()).await;
    e2e.wait_for("the missing namespace in the cluster's last error", |r| {
        r.clusters
            .get(&name)
            .and_then(|c| c.last_error.as_deref())
            .is_some_and(|e| e.contains(r#"404 NotFound: namespaces "payments" not found"#))
    })
    .await;
    assert!(!object_writes(&e2e.audit(&name)).is_empty());
    // The failure persists: retries follow the backoff (0.5 s doubling), not the 1 s
    // resync. From 3 s to 9 s after the first failure that is at most three passes of two
    // applies each; on every resync it would be six passes or more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = e2e.audit(&name).len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let retries = object_writes(&e2e.audit(&name)[mark..]).len();
    assert!(retries <= 6, "{retries} applies in 6 s");
    // Once the namespace is there, a retry applies the claim.
    e2e.namespace(&name, "payments").await;
    let report = e2e.wait_ready(&[(&name, 1)]).await;
    assert_eq!(report.clusters[&name].last_error, None);
    e2e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_prune_exits_zero_and_a_restart_completes_in_the_safe_order() {
    // Uninstalling takes a second, so SIGTERM lands while the prune is under way, and the
    // new claim's Usage waits for its Releases, so applies are under way too.
    let e2e = E2e::start(1, Duration::from_secs(2)).await;
    let name = e2e.names[0].clone();
    e2e.add_claim("gone", &name, &[]).await;
    e2e.add_claim("kept", &name, &[]).await;
    let mut agent = e2e.spawn_agent_process().await;
    e2e.wait_ready(&[(&name, 2)]).await;
    let mark = e2e.audit(&name).len();
    e2e.namespace(&name, "fresh").await;
    e2e.remove(&claim_file("gone", &name));
    e2e.write(&claim_file("fresh", &name), &claim("fresh", &name, &[]));
    e2e.eventually("the first prune step", || async {
        !deletes(&e2e.audit(&name)[mark..]).is_empty()
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
    let stopped = deletes(&e2e.audit(&name)[mark..]);
    assert!(
        stopped.len() < 3 && safe_order("gone").starts_with(&stopped),
        "{stopped:?}"
    );

    let mut agent = e2e.spawn_agent_process().await;
    e2e.eventually("the prune to complete", || async {
        deletes(&e2e.audit(&name)[mark..]).len() == 3
    })
    .await;
    let report = e2e.wait_ready(&[(&name, 2)]).await;
    let claims: Vec<&str> = report.clusters[&name]
        .claims
        .iter()
        .map(|c| c.claim.as_str())
        .collect();
    assert_eq!(claims, ["fresh/fresh", "kept/kept"]);
    let audit = e2e.audit(&name);
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
    let kubeconfig = std::fs::read_to_string(e2e.sim.kubeconfig_path(&name)).unwrap();
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
    e2e.shutdown().await;
}
