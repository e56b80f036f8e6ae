//! Leader election end to end: two `psql-fleet run --leader-elect` processes on one
//! simulated fleet, the Lease on a simulated cluster that doubles as the management
//! cluster, with short timings (lease 3 s, renew deadline 2 s, retry 0.5 s). Only the
//! leader writes; `kill -9` of the leader hands over within a lease duration and a retry
//! period; a leader paused past its lease (SIGSTOP, SIGCONT) writes nothing once it has
//! lost the Lease, which the simulator's audit log (one log, in the order requests were
//! served) shows against the Lease writes. In-process, electors racing for one Lease never
//! hold two open write fences at once.

use test_support as common;

use std::time::{Duration, Instant};

use common::agent::{leader_elect_args, AgentProcess, ProcessOptions};
use common::audit::{EVENTS, RELEASES, USAGES};
use common::SimFleet;
use fleet_core::api::Release;
use fleet_core::testing::{claim, cluster, fleet, wave};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube_sim::audit::AuditEntry;
use psql_fleet::status::StatusReport;

const LEASE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);
/// Polling the status (50 ms), process scheduling on a loaded 2-core machine, and the
/// standby's retry jitter (a fifth of the retry period).
const SLACK: Duration = Duration::from_millis(1500);
const LEASE_RESOURCE: &str = "leases.coordination.k8s.io";

/// `psql-fleet run --leader-elect` as `name`, the Lease on `management`.
async fn spawn(f: &SimFleet, name: &str, management: &str) -> AgentProcess {
    let kubeconfig = f.sim.kubeconfig_path(management);
    f.spawn_agent(ProcessOptions {
        name: Some(name.into()),
        args: leader_elect_args(&kubeconfig, &format!("agent-{name}"), ["3s", "2s", "500ms"]),
        ..ProcessOptions::default()
    })
    .await
}

fn role(r: &StatusReport) -> &str {
    r.leader.as_ref().map_or("", |l| l.role.as_str())
}

/// A standby that has read the Lease: an elector reports "standby" from its start, before
/// its first read, with no holder yet.
fn standby_behind_a_holder(r: &StatusReport) -> bool {
    role(r) == "standby" && r.leader.as_ref().is_some_and(|l| l.holder.is_some())
}

async fn lease(f: &SimFleet, management: &str) -> Lease {
    Api::<Lease>::namespaced(f.client(management).await, "default")
        .get("psql-fleet")
        .await
        .unwrap()
}

/// Who applied each Release on `cluster` (`fleet.hops.ops.com.ai/applied-by`).
async fn applied_by(f: &SimFleet, cluster: &str) -> Vec<String> {
    let api: Api<Release> = Api::all(f.client(cluster).await);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| {
            r.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("fleet.hops.ops.com.ai/applied-by"))
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn fleet_write(e: &AuditEntry) -> bool {
    e.resource == RELEASES || e.resource == USAGES || e.resource == EVENTS
}

fn lease_write(e: &AuditEntry) -> bool {
    e.resource == LEASE_RESOURCE && e.code < 300 && e.verb != "delete"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over_within_a_lease_after_kill_9() {
    let f = SimFleet::start(3, Duration::from_millis(200)).await;
    let management = f.names[0].clone();
    f.claim_everywhere();
    let mut a = spawn(&f, "a", &management).await;
    a.wait_for("agent-a to lead", |r| role(r) == "leader").await;
    let b = spawn(&f, "b", &management).await;
    let standby = b
        .wait_for("agent-b to be a standby", standby_behind_a_holder)
        .await;
    let leader = standby.leader.as_ref().unwrap();
    assert_eq!(leader.holder.as_deref(), Some("agent-a"), "{leader:?}");
    assert_eq!(leader.identity, "agent-b");
    a.wait_converged(&f.names, 1).await;

    // The standby runs no cluster worker: it reports no cluster, applies nothing, and
    // every object carries the leader's name.
    let b_status = b.report().await;
    assert!(b_status.clusters.is_empty(), "{b_status:?}");
    assert_eq!(
        b.get("/readyz").await.as_deref(),
        Some("ready (standby: another replica leads)\n")
    );
    for cluster in &f.names {
        let by = applied_by(&f, cluster).await;
        assert!(
            !by.is_empty() && by.iter().all(|w| w.ends_with(&format!("pid {}", a.pid()))),
            "{cluster}: {by:?} (agent-a is pid {}, agent-b pid {})",
            a.pid(),
            b.pid()
        );
    }
    let b_log = std::fs::read_to_string(f.sim_dir().join("agent-b.log")).unwrap();
    assert!(
        !b_log.contains(" apply ") && !b_log.contains("prune"),
        "the standby applied:\n{b_log}"
    );

    // The leader dies without a word; a change to the fleet arrives meanwhile.
    let before = lease(&f, &management).await.spec.unwrap();
    a.kill();
    let killed = Instant::now();
    f.add_claim(
        &claim("second", &f.names[1])
            .namespace("second")
            .install_namespace("second"),
    )
    .await;
    b.wait_for_within("agent-b to lead", LEASE * 4, |r| role(r) == "leader")
        .await;
    let took = killed.elapsed();
    eprintln!("agent-b led {took:?} after agent-a was killed");
    assert!(
        took <= LEASE + RETRY + SLACK,
        "agent-b led {took:?} after the kill, more than the lease duration and a retry period"
    );
    // Nor before the lease could expire: agent-a's last renewal, about a retry period
    // before the kill at most, holds for a full lease duration (half of one is the bound
    // here, so that a slow renewal on a loaded machine does not fail the test).
    assert!(
        took >= LEASE / 2,
        "agent-b took a lease that had not expired: {took:?} after the kill"
    );
    let after = lease(&f, &management).await.spec.unwrap();
    assert_eq!(after.holder_identity.as_deref(), Some("agent-b"));
    assert_eq!(
        after.lease_transitions.unwrap_or(0),
        before.lease_transitions.unwrap_or(0) + 1
    );
    assert_ne!(after.acquire_time, before.acquire_time);

    b.wait_ready(&[(&f.names[0], 1), (&f.names[1], 2), (&f.names[2], 1)])
        .await;
    let by = applied_by(&f, &f.names[1]).await;
    assert!(
        by.iter().any(|w| w.ends_with(&format!("pid {}", b.pid()))),
        "the new claim is agent-b's: {by:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_after_losing_it() {
    let f = SimFleet::start(2, Duration::from_millis(200)).await;
    let management = f.names[0].clone();
    f.claim_everywhere();
    let a = spawn(&f, "a", &management).await;
    a.wait_for("agent-a to lead", |r| role(r) == "leader").await;
    a.wait_converged(&f.names, 1).await;
    let mut b = spawn(&f, "b", &management).await;
    b.wait_for("agent-b to be a standby", standby_behind_a_holder)
        .await;

    // Paused past its lease: agent-b takes the Lease.
    a.signal("STOP");
    b.wait_for_within("agent-b to lead", LEASE * 4, |r| role(r) == "leader")
        .await;
    b.wait_converged(&f.names, 1).await;
    // agent-b goes too, so that every fleet write from here on is agent-a's; and the
    // fleet drifts, which agent-a, woken, would correct at once if nothing fenced it.
    b.kill();
    f.admin(
        "POST",
        &format!("/clusters/{}/edit", f.names[1]),
        serde_json::json!({"name": "stackgres-operator", "namespace": "default",
            "manager": "kubectl-edit", "patch": {"spec": {"rollbackLimit": 7}}}),
    )
    .await;
    let woken_at = f.audit_all().len();
    a.signal("CONT");

    // It says it lost the Lease, then takes it again once agent-b's expires. Its status
    // read at once after CONT may still be the one from before the pause (leader, every
    // cluster ready), so the loss is waited for in its log first.
    let log_path = f.sim_dir().join("agent-a.log");
    common::wait::until("agent-a to say it lost the lease", || async {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("lost the lease"))
    })
    .await;
    a.wait_for_within("agent-a to lead again", LEASE * 4, |r| role(r) == "leader")
        .await;
    a.wait_ready(&[(&f.names[0], 1), (&f.names[1], 1)]).await;

    let after: Vec<AuditEntry> = f.audit_all().split_off(woken_at);
    let taken = after
        .iter()
        .position(lease_write)
        .unwrap_or_else(|| panic!("agent-a never wrote the Lease again: {after:#?}"));
    let early: Vec<&AuditEntry> = after[..taken].iter().filter(|e| fleet_write(e)).collect();
    assert!(
        early.is_empty(),
        "agent-a wrote to fleet clusters before it held the Lease again: {early:#?}"
    );
    assert!(
        after[taken..]
            .iter()
            .any(|e| e.resource == RELEASES && e.field_manager.as_deref() == Some("psql-fleet")),
        "the drift was corrected once agent-a held the Lease again: {after:#?}"
    );
    let held = lease(&f, &management).await.spec.unwrap();
    assert_eq!(held.holder_identity.as_deref(), Some("agent-a"));
}

/// Five electors in one process race for one Lease from the start; then the leader's
/// task is aborted (a crash without a word). Sampled every 10 ms throughout: never two
/// fences open at once, and someone leads again once the lease has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_electors_never_hold_two_open_fences_at_once() {
    use psql_fleet::agent::leader::{Elector, Fence, Settings};
    use std::sync::{Arc, RwLock};

    let (_dir, handle, name, _client) = common::sim::one_cluster().await;
    let mut electors = Vec::new();
    for i in 0..5 {
        let client = common::sim::client(&handle, &name).await;
        let settings = Settings {
            kubeconfig: None,
            namespace: "default".into(),
            lease_name: "race".into(),
            identity: format!("elector-{i}"),
            lease_duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(600),
            retry_period: Duration::from_millis(100),
        };
        let fence = Fence::closed();
        let status = Arc::new(RwLock::new(StatusReport::default()));
        let (role, _releaser, task) = Elector::spawn(client, settings, fence.clone(), status);
        electors.push((fence, role, task));
    }
    let open = |electors: &[(Fence, _, _)]| {
        electors
            .iter()
            .enumerate()
            .filter(|(_, (f, _, _))| f.allows_writes())
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let mut first = None;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let now = open(&electors);
        assert!(now.len() <= 1, "fences open at once: {now:?}");
        first = first.or(now.first().copied());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = first.expect("one elector leads within 2 s");
    electors[first].2.abort();
    let aborted = Instant::now();
    let mut next = None;
    while aborted.elapsed() < Duration::from_secs(5) && next.is_none() {
        let now = open(&electors);
        assert!(now.len() <= 1, "fences open at once: {now:?}");
        next = now.first().copied().filter(|i| *i != first);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = next.expect("another elector leads after the leader's crash");
    assert!(
        aborted.elapsed() >= Duration::from_millis(400),
        "elector-{next} led {:?} after the crash, before the lease could expire",
        aborted.elapsed()
    );
    let holder = Api::<Lease>::namespaced(common::sim::client(&handle, &name).await, "default")
        .get("race")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder, Some(format!("elector-{next}")));
}

/// Four clusters in waves dev (the management cluster too), staging and prod, one claim
/// each, StackGres pinned at `stackgres`; staging bakes `staging_bake`.
fn waved(f: &SimFleet, stackgres: &str, staging_bake: &str) {
    f.put(
        &fleet("main")
            .force(true)
            .pin("stackgres-operator", stackgres)
            .wave(wave("dev", &[("env", "dev")]).bake_time("1s"))
            .wave(wave("staging", &[("env", "staging")]).bake_time(staging_bake))
            .wave(wave("prod", &[("env", "prod")])),
    );
}

async fn four_in_waves() -> SimFleet {
    let f = SimFleet::start(4, Duration::from_millis(200)).await;
    for (name, env) in f.names.iter().zip(["dev", "dev", "staging", "prod"]) {
        f.put(&cluster(name).label("env", env));
        f.put(&claim("app", name));
    }
    waved(&f, "1.18.4", "1s");
    f
}

/// Once `agent` has rolled the first revision out everywhere, bumps StackGres (staging
/// baking `staging_bake`) and waits until staging bakes the bump: the first revision, and
/// the status then.
async fn bump_to_staging_bake(
    f: &SimFleet,
    agent: &AgentProcess,
    staging_bake: &str,
) -> (String, StatusReport) {
    let first = agent
        .wait_for_within(
            "the first revision everywhere",
            Duration::from_secs(60),
            |r| rollout_phase(r, "") == Some("complete"),
        )
        .await
        .rollout
        .unwrap()
        .revision;
    waved(f, "1.19.0", staging_bake);
    let baking = agent
        .wait_for_within("staging to bake the bump", Duration::from_secs(60), |r| {
            wave_state(r, "staging") == "baking" && rollout_phase(r, &first).is_some()
        })
        .await;
    (first, baking)
}

fn rollout_phase<'a>(r: &'a StatusReport, not: &str) -> Option<&'a str> {
    r.rollout
        .as_ref()
        .filter(|x| x.revision != not)
        .map(|x| x.phase.as_str())
}

fn wave_state<'a>(r: &'a StatusReport, wave: &str) -> &'a str {
    r.rollout
        .as_ref()
        .and_then(|x| x.waves.iter().find(|w| w.name == wave))
        .map_or("", |w| w.state.as_str())
}

/// Under leader election the rollout state lives in ConfigMaps on the management
/// cluster: an operator's halt, taken by the leader, survives both replicas being killed
/// at once and two new ones, with empty caches, taking over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_survives_every_replica_restarting_at_once() {
    let f = four_in_waves().await;
    let management = f.names[0].clone();
    let mut a = spawn(&f, "a", &management).await;
    let mut b = spawn(&f, "b", &management).await;
    // The bump stops in staging's bake, where the operator halts it.
    let (_, baking) = bump_to_staging_bake(&f, &a, "10m").await;
    let bump = baking.rollout.unwrap().revision;
    let (code, _, body) = b
        .control(
            "POST",
            "/api/v1/rollout/halt",
            Some(r#"{"reason":"incident 42"}"#),
        )
        .await;
    assert_eq!(code, 503, "a standby does not decide: {body}");
    assert!(body.contains("agent-a"), "{body}");
    let (code, _, body) = a
        .control(
            "POST",
            "/api/v1/rollout/halt",
            Some(r#"{"reason":"incident 42"}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");

    let maps: Api<ConfigMap> = Api::namespaced(f.client(&management).await, "default");
    let kept = maps.get("psql-fleet-rollout").await.unwrap();
    let labels = kept.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("fleet.hops.ops.com.ai/fleet")
            .map(String::as_str),
        Some("main")
    );
    let revisions = maps
        .list(&ListParams::default().labels("fleet.hops.ops.com.ai/kept=revision"))
        .await
        .unwrap();
    assert!(
        revisions.items.iter().all(|cm| cm.immutable == Some(true)) && revisions.items.len() == 2,
        "the first revision (prod's) and the bump are kept: {:?}",
        revisions
            .items
            .iter()
            .map(|cm| &cm.metadata.name)
            .collect::<Vec<_>>()
    );

    a.kill();
    b.kill();
    let c = spawn(&f, "c", &management).await;
    let d = spawn(&f, "d", &management).await;
    let led = |r: &StatusReport| role(r) == "leader";
    let halted = |r: &StatusReport| {
        r.rollout
            .as_ref()
            .is_some_and(|x| x.revision == bump && x.phase == "halted")
    };
    let resumed = tokio::select! {
        r = c.wait_for_within("agent-c or agent-d to lead, halted", LEASE * 6, |r| led(r) && halted(r)) => r,
        r = d.wait_for_within("agent-c or agent-d to lead, halted", LEASE * 6, |r| led(r) && halted(r)) => r,
    };
    let table = resumed.to_table();
    assert!(
        table.contains("rollout state: ConfigMap default/psql-fleet-rollout\n"),
        "{table}"
    );
    let h = resumed.rollout.unwrap().halted.unwrap();
    assert!(h.reason.contains("incident 42") && h.by_operator, "{h:?}");
    // Held: prod is still on the first revision's chart.
    assert_eq!(
        common::audit::release_version(&f.sim, &f.names[3], "stackgres-operator").as_deref(),
        Some("1.18.4")
    );
}

/// `kill -9` of the leader in the middle of a rollout: the replica that leads next goes on
/// from the wave it was in, writing nothing to the waves already done, and every write
/// names its replica in the User-Agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_goes_on_from_the_wave_the_rollout_was_in() {
    let f = four_in_waves().await;
    let management = f.names[0].clone();
    let mut a = spawn(&f, "a", &management).await;
    let b = spawn(&f, "b", &management).await;
    let (first, before) = bump_to_staging_bake(&f, &a, "6s").await;
    let dev_done = before.rollout.as_ref().unwrap().waves[0].clone();
    assert_eq!(dev_done.state, "complete");
    a.kill();
    let killed_at = f.audit_all().len();

    let after = b
        .wait_for_within(
            "agent-b to lead, in the bump's staging wave",
            LEASE * 4,
            |r| role(r) == "leader" && wave_state(r, "staging") == "baking",
        )
        .await;
    let r = after.rollout.as_ref().unwrap();
    assert_eq!(r.revision, before.rollout.as_ref().unwrap().revision);
    assert_eq!(r.waves[0], dev_done, "dev is not done again");
    b.wait_for_within("the bump everywhere", Duration::from_secs(60), |r| {
        r.rollout
            .as_ref()
            .is_some_and(|x| x.phase == "complete" && x.revision != first)
    })
    .await;
    assert_eq!(
        common::audit::release_version(&f.sim, &f.names[3], "stackgres-operator").as_deref(),
        Some("1.19.0")
    );
    let writes = f.audit_all();
    let version = env!("CARGO_PKG_VERSION");
    for e in writes.iter().filter(|e| fleet_write(e)) {
        let ua = e.user_agent.as_deref().unwrap_or_default();
        assert!(
            ua == format!("psql-fleet/{version} (agent-a)")
                || ua == format!("psql-fleet/{version} (agent-b)"),
            "{e:?}"
        );
    }
    let again: Vec<&AuditEntry> = writes[killed_at..]
        .iter()
        .filter(|e| e.resource == RELEASES && [&f.names[0], &f.names[1]].contains(&&e.cluster))
        .filter(|e| e.verb != "get")
        .collect();
    assert!(again.is_empty(), "dev was written again: {again:#?}");
    let metrics = b.metrics().await;
    assert!(metrics.contains("psql_fleet_leader 1"), "{metrics}");
}
