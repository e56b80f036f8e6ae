//! One cluster's task: connect from the kubeconfig, watch the Releases and Usages carrying
//! the fleet's inventory label, and run a reconcile pass whenever the fleet or the cluster
//! changes. Failures back off exponentially with jitter; passes take a permit from the
//! fleet-wide semaphore, so only a bounded number of clusters are written at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use super::apply::{self, Writer};
use super::{kubeconfig, Accepted, Shared};
use crate::agent::rollout::Assignment;
use crate::api::{LABEL_FLEET, LABEL_PSQL};
use crate::metrics::ErrorReason;
use crate::reconcile::backoff::{pass_due, Wake};
use crate::reconcile::{
    plan_cluster, Action, ApplyReason, Backoff, ClusterInput, ClusterPlan, Drift, LiveState,
};
use crate::render::{claim_object_refs, ObjectKind, ObjectRef};
use crate::rollout::Health;
use crate::status::{ClaimStatus, ClusterStatus};

/// Why a watch session ended.
enum End {
    Stop,
    /// The kubeconfig changed or the cluster's entry did: connect again at once.
    Reconnect,
}

/// Runs until `stop` turns true or the cluster leaves the fleet.
pub async fn run(
    name: String,
    shared: Arc<Shared>,
    mut fleet: watch::Receiver<Arc<Accepted>>,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = Backoff::default();
    let mut attempt = 0u32;
    let mut state = WorkerState::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let accepted = fleet.borrow().clone();
        let Some(cluster) = accepted.fleet.clusters.get(&name).cloned() else {
            return;
        };
        let connected = match kubeconfig::resolve(&shared.credentials_dir, &cluster) {
            Ok(path) => {
                let print = kubeconfig::fingerprint(&path);
                kubeconfig::client(&path, &cluster, kubeconfig::insecure_allowed())
                    .await
                    .map(|c| (c, path, print))
            }
            Err(e) => Err(e),
        };
        let end = match connected {
            Ok((client, path, print)) => {
                session(
                    &name, &shared, client, &mut fleet, &mut stop, &mut state, &path, print,
                )
                .await
            }
            Err(e) => {
                tracing::warn!(cluster = %name, error = %e, "cannot build client");
                shared.metrics.count_error(&name, ErrorReason::Kubeconfig);
                shared.metrics.set_reachable(&name, false);
                let claims = accepted.fleet.claims_of(&name).map(|c| c.key());
                shared.metrics.record_unobserved(&name, claims);
                update_status(&shared, &name, |s| {
                    s.reachable = false;
                    s.last_error = Some(e.to_string());
                });
                Err(())
            }
        };
        match end {
            Ok(End::Stop) => return,
            Ok(End::Reconnect) => attempt = 0,
            Err(()) => {
                let delay = backoff.delay(attempt, fastrand::f64());
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                    _ = fleet.changed() => {}
                }
            }
        }
    }
}

/// What a worker remembers across sessions.
#[derive(Default)]
struct WorkerState {
    /// Objects seen on the cluster, so that their absence is a deletion by hand.
    seen: BTreeSet<ObjectRef>,
    /// Drift already reported, so a report is an Event once, not on every pass.
    reported: BTreeMap<ObjectRef, Drift>,
    /// The last failed apply per object, so a conflict that persists across retries is an
    /// Event once (the error metric counts every attempt), until an apply succeeds.
    failed: BTreeMap<ObjectRef, String>,
}

/// A live view built from watch events; synced once both initial lists are in.
#[derive(Default)]
struct LiveView {
    live: LiveState,
    init: BTreeMap<ObjectKind, LiveState>,
    synced: BTreeSet<ObjectKind>,
}

impl LiveView {
    fn handle(
        &mut self,
        kind: ObjectKind,
        event: Event<DynamicObject>,
        seen: &mut BTreeSet<ObjectRef>,
    ) {
        let live = |o: DynamicObject| apply::to_live(kind, o);
        match event {
            Event::Init => {
                self.init.insert(kind, LiveState::new());
            }
            Event::InitApply(o) => {
                if let Some(l) = live(o) {
                    self.init
                        .entry(kind)
                        .or_default()
                        .insert(l.object_ref.clone(), l);
                }
            }
            Event::InitDone => {
                let fresh = self.init.remove(&kind).unwrap_or_default();
                self.live.retain(|at, _| at.kind != kind);
                seen.extend(
                    fresh
                        .values()
                        .filter(|l| !l.terminating())
                        .map(|l| l.object_ref.clone()),
                );
                self.live.extend(fresh);
                self.synced.insert(kind);
            }
            Event::Apply(o) => {
                if let Some(l) = live(o) {
                    // Only a live object counts as seen: the updates of one being deleted
                    // (finalizers going) must not mark an object the agent pruned itself,
                    // or its return (a Usage whose gate opens again) would look like drift.
                    if !l.terminating() {
                        seen.insert(l.object_ref.clone());
                    }
                    self.live.insert(l.object_ref.clone(), l);
                }
            }
            Event::Delete(o) => {
                if let Some(l) = live(o) {
                    self.live.remove(&l.object_ref);
                }
            }
        }
    }

    fn synced(&self) -> bool {
        self.synced.len() == 2
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn session(
    name: &str,
    shared: &Arc<Shared>,
    client: kube::Client,
    fleet: &mut watch::Receiver<Arc<Accepted>>,
    stop: &mut watch::Receiver<bool>,
    state: &mut WorkerState,
    kubeconfig_path: &std::path::Path,
    print: Option<[u8; 32]>,
) -> Result<End, ()> {
    let accepted = fleet.borrow().clone();
    let selector = format!("{LABEL_FLEET}={}", accepted.fleet.settings.name);
    let stream_of = |kind: ObjectKind| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &apply::resource(kind));
        watcher::watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .map(move |e| (kind, e))
            .boxed()
    };
    let mut events =
        futures::stream::select(stream_of(ObjectKind::Release), stream_of(ObjectKind::Usage));
    let mut view = LiveView::default();
    let mut resync = tokio::time::interval(shared.resync);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut attempt = 0u32;
    let backoff = crate::reconcile::Backoff::default();
    let mut reachable = None;
    let mut watch_failure: Option<String> = None;
    // Whether the watch last failed to reach the server at all (not an answer from it).
    let mut watch_unreached = false;
    let mut assigned = shared.rollouts.subscribe();
    loop {
        let mut due = false;
        tokio::select! {
            _ = stop.changed() => return Ok(End::Stop),
            changed = assigned.changed() => {
                if changed.is_err() { return Ok(End::Stop); }
                due = true;
            }
            changed = fleet.changed() => {
                if changed.is_err() { return Ok(End::Stop); }
                let now = fleet.borrow().clone();
                if now.fleet.settings.name != accepted.fleet.settings.name
                    || now.fleet.clusters.get(name) != accepted.fleet.clusters.get(name) {
                    return Ok(End::Reconnect);
                }
                due = true;
            }
            event = events.next() => match event {
                Some((kind, Ok(e))) => {
                    view.handle(kind, e, &mut state.seen);
                    // Take every event already waiting, then plan once.
                    while let Some(Some((kind, Ok(e)))) = events.next().now_or_never() {
                        view.handle(kind, e, &mut state.seen);
                    }
                    set_reachable(shared, name, &mut reachable, true, None, None);
                    due = true;
                }
                Some((_, Err(e))) => {
                    if !view.synced() {
                        let claims = accepted.fleet.claims_of(name).map(|c| c.key());
                        shared.metrics.record_unobserved(name, claims);
                    }
                    let (what, reason) = watch_error(&e);
                    watch_failure = Some(format!("cluster {name}: watch failed: {what}"));
                    watch_unreached = reason == ErrorReason::Unreachable;
                    set_reachable(shared, name, &mut reachable, false, Some(reason), watch_failure.clone());
                }
                None => return Err(()),
            },
            _ = resync.tick() => {
                if kubeconfig::fingerprint(kubeconfig_path) != print {
                    tracing::info!(cluster = %name, "kubeconfig changed; reconnecting");
                    return Ok(End::Reconnect);
                }
                due = pass_due(Wake::Resync, retry_at.is_some());
            }
            _ = async { if let Some(at) = retry_at { tokio::time::sleep_until(at).await } else { std::future::pending::<()>().await } } => {
                retry_at = None;
                due = true;
            }
        }
        if !due || !view.synced() {
            continue;
        }
        let accepted = fleet.borrow().clone();
        let span = tracing::info_span!("reconcile", cluster = %name, revision = %short(&accepted.revision));
        let outcome = pass(name, shared, &client, &accepted, &mut view, state)
            .instrument(span)
            .await;
        match outcome.reached {
            // The pass's own calls are the latest word on the server.
            Some(reached) => {
                let error =
                    (!reached).then(|| format!("cluster {name}: unreachable while applying"));
                set_reachable(shared, name, &mut reachable, reached, None, error);
            }
            // A pass that called nothing knows nothing new, and a watch that reconnected
            // where it left off says nothing either: no event when nothing changed (an
            // idle cluster whose API server restarted), no relist when the server lost
            // what the view holds (a store restored from an older backup answers 504 to
            // every watch from there). Once the server answers a call the watch needs
            // anyway, start over: the relist is the latest word. Until then, what the
            // watch said stands.
            None if reachable == Some(false) => {
                let api: Api<DynamicObject> =
                    Api::all_with(client.clone(), &apply::resource(ObjectKind::Release));
                let probe = ListParams::default().labels(&selector).limit(1);
                let answered = watch_unreached
                    && tokio::time::timeout(shared.call_timeout, api.list_metadata(&probe))
                        .await
                        .is_ok_and(|r| r.is_ok());
                if answered {
                    tracing::info!(cluster = %name, "the API server answers again; relisting");
                    return Ok(End::Reconnect);
                }
                let error = watch_failure.clone();
                update_status(shared, name, |s| {
                    s.reachable = false;
                    s.last_error = error.or(s.last_error.take());
                });
            }
            None => {}
        }
        if outcome.failed == 0 {
            attempt = 0;
            retry_at = None;
        } else {
            retry_at = Some(tokio::time::Instant::now() + backoff.delay(attempt, fastrand::f64()));
            attempt = attempt.saturating_add(1);
        }
    }
}

/// What failed, with the API server's code and reason when it answered (never its
/// message, which may quote a request), and the metric reason it counts under.
fn watch_error(e: &watcher::Error) -> (String, ErrorReason) {
    let (what, answer) = match e {
        watcher::Error::InitialListFailed(e) => ("initial list failed", api_answer(e)),
        watcher::Error::WatchStartFailed(e) => ("watch could not start", api_answer(e)),
        watcher::Error::WatchError(s) => {
            ("API server returned an error", Some((s.code, &s.reason)))
        }
        watcher::Error::WatchFailed(e) => ("watch connection failed", api_answer(e)),
        _ => ("watch failed", None),
    };
    match answer {
        Some((code, reason)) => (
            format!("{what}: API server answered {code} {reason}"),
            match code {
                401 | 403 => ErrorReason::Forbidden,
                _ => ErrorReason::ApiError,
            },
        ),
        None => (what.to_string(), ErrorReason::Unreachable),
    }
}

fn api_answer(e: &kube::Error) -> Option<(u16, &String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, &s.reason)),
        _ => None,
    }
}

/// Reachability has one owner, the session: the watch and the passes that made calls both
/// report here. `counted_as` is the error reason to count on the change to unreachable
/// (`None` when the failed call has been counted already).
fn set_reachable(
    shared: &Shared,
    name: &str,
    current: &mut Option<bool>,
    now: bool,
    counted_as: Option<ErrorReason>,
    error: Option<String>,
) {
    if *current == Some(now) {
        // Still unreachable, maybe for another reason now (refused, then 401): say the
        // latest one.
        if let (false, Some(error)) = (now, error) {
            update_status(shared, name, |s| s.last_error = Some(error));
        }
        return;
    }
    *current = Some(now);
    shared.metrics.set_reachable(name, now);
    if !now {
        if let Some(reason) = counted_as {
            shared.metrics.count_error(name, reason);
        }
        tracing::warn!(cluster = %name, error = ?error, "cluster unreachable");
    }
    update_status(shared, name, |s| {
        s.reachable = now;
        if error.is_some() {
            s.last_error = error;
        }
    });
}

/// What one reconcile pass found.
struct PassOutcome {
    failed: usize,
    /// Whether the pass's calls reached the server; `None` when it made none.
    reached: Option<bool>,
}

/// One reconcile pass.
async fn pass(
    name: &str,
    shared: &Shared,
    client: &kube::Client,
    accepted: &Accepted,
    view: &mut LiveView,
    state: &mut WorkerState,
) -> PassOutcome {
    let nothing = PassOutcome {
        failed: 0,
        reached: None,
    };
    // The rollout decides which revision this cluster is reconciled to: a later wave keeps
    // the previous one (drift correction included) until its turn.
    let given = match shared.rollouts.assignment(name) {
        Assignment::Revision(given) => given,
        Assignment::Waiting => {
            let wave = shared.rollouts.waiting_for(name).map(|(w, _)| w);
            update_status(shared, name, |s| {
                s.reconciled = true;
                s.last_error = None;
                s.wave = wave;
            });
            return nothing;
        }
        Assignment::Missing(e) => {
            update_status(shared, name, |s| {
                s.reconciled = true;
                s.last_error = Some(format!("not reconciled: {e}"));
            });
            return nothing;
        }
    };
    let Some(cluster) = given.fleet.clusters.get(name) else {
        return nothing;
    };
    let seen = state.seen.clone();
    let is_seen = move |at: &ObjectRef| seen.contains(at);
    let plan = plan_cluster(&ClusterInput {
        fleet: &given.fleet,
        cluster,
        live: &view.live,
        seen: &is_seen,
        guard_prune: !accepted.has_baseline,
        allow_mass_prune: shared.allow_mass_prune,
    });
    let writes = plan.actions.iter().any(Action::writes);
    let started = Instant::now();
    let writer = Writer {
        client: client.clone(),
        cluster: name.to_string(),
        timeout: shared.call_timeout,
    };
    let mut errors: Vec<String> = Vec::new();
    // A pass whose calls could not reach the server says so, whatever the watch said last.
    let mut unreachable = false;
    let mut answered = false;
    // Only passes that write hold a permit: reading the plan is free.
    let _permit = if writes && !shared.dry_run {
        shared.semaphore.acquire().await.ok()
    } else {
        None
    };
    for action in &plan.actions {
        let span = tracing::info_span!("action", claim = %claim_of(action, &view.live), object = %action.object_ref());
        match carry_out(shared, &writer, action, state)
            .instrument(span)
            .await
        {
            // What the server answered stands until the watch says otherwise, so a pass
            // woken by the next event does not apply the same object again.
            Ok(Some(served)) => {
                answered |= action.writes() && !shared.dry_run;
                view.live.insert(served.object_ref.clone(), served);
            }
            Ok(None) => {
                answered |= action.writes() && !shared.dry_run;
                if matches!(action, Action::Delete { .. }) && !shared.dry_run {
                    view.live.remove(&action.object_ref());
                }
            }
            Err(e) => {
                unreachable |=
                    matches!(e.reason(), ErrorReason::Unreachable | ErrorReason::Timeout);
                shared.metrics.count_error(name, e.reason());
                tracing::warn!(cluster = %name, error = %e, "action failed");
                errors.push(e.to_string());
            }
        }
    }
    if let Some(refused) = &plan.prune_refused {
        shared.metrics.count_error(name, ErrorReason::MassPrune);
        tracing::warn!(cluster = %name, %refused, "prune held back");
    }
    // Drift that is gone (corrected, or undone by hand) may be reported again later.
    let still_reported: BTreeSet<ObjectRef> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::ReportDrift { .. }))
        .map(Action::object_ref)
        .collect();
    state.reported.retain(|at, _| still_reported.contains(at));
    shared
        .metrics
        .observe_duration(name, started.elapsed().as_secs_f64());
    shared.metrics.record_plan(name, &plan);
    let failed = errors.len();
    for claim in &plan.claims {
        tracing::debug!(claim = %claim.key, ready = claim.readiness.ready, reason = claim.readiness.reason.as_deref().unwrap_or(""), "claim");
    }
    tracing::debug!(actions = plan.actions.len(), failed, "pass done");
    let health = rollout_health(&given, name, &plan, &view.live, &errors);
    record_status(shared, name, &given.revision, &plan, errors);
    shared.rollouts.report(name, health);
    PassOutcome {
        failed,
        reached: if unreachable {
            Some(false)
        } else {
            answered.then_some(true)
        },
    }
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// `<namespace>/<name>` of the claim an action is for, from the object's `hops.ops.com.ai/psql`
/// label (the desired object's, else the live one's).
fn claim_of(action: &Action, live: &LiveState) -> String {
    let at = action.object_ref();
    let name = match action {
        Action::Apply { object, .. } => {
            let labels = match object.as_ref() {
                crate::render::DesiredObject::Release(r) => r.metadata.labels.as_ref(),
                crate::render::DesiredObject::Usage(u) => u.metadata.labels.as_ref(),
            };
            labels.and_then(|l| l.get(LABEL_PSQL)).cloned()
        }
        _ => live
            .get(&at)
            .and_then(|o| o.claim_name())
            .map(str::to_string),
    };
    format!("{}/{}", at.namespace, name.as_deref().unwrap_or("?"))
}

/// How the pass went, for the rollout gate: ready only when nothing was left to write,
/// every claim is ready, and each Release's readiness was reported for its current spec
/// (a `Ready=True` from before the update does not count).
fn rollout_health(
    given: &Accepted,
    name: &str,
    plan: &ClusterPlan,
    live: &LiveState,
    errors: &[String],
) -> Health {
    let mut waiting: Vec<String> = Vec::new();
    if let Some(s) = plan.suspended {
        waiting.push(format!("suspended ({s:?})").to_lowercase());
    }
    if plan.actions.iter().any(Action::writes) {
        waiting.push("changes still being applied".into());
    }
    for claim in plan.claims.iter().filter(|c| !c.readiness.ready) {
        let reason = claim.readiness.reason.as_deref().unwrap_or("not ready");
        waiting.push(format!("claim {}: {reason}", claim.key));
    }
    for claim in given.fleet.claims_of(name) {
        for at in claim_object_refs(claim).iter().take(2) {
            if live.get(at).is_some_and(|o| !o.ready_condition_current()) {
                waiting.push(format!(
                    "{at}: readiness not yet reported for the current spec"
                ));
            }
        }
    }
    Health {
        revision: given.revision.clone(),
        ready: waiting.is_empty(),
        reason: (!waiting.is_empty()).then(|| waiting.join("; ")),
        errors: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

async fn carry_out(
    shared: &Shared,
    writer: &Writer,
    action: &Action,
    state: &mut WorkerState,
) -> Result<Option<crate::reconcile::LiveObject>, apply::Error> {
    let at = action.object_ref();
    let cluster = writer.cluster.as_str();
    match action {
        Action::ReportDrift { drift, .. } => {
            if state.reported.get(&at) != Some(drift) {
                tracing::warn!(cluster, object = %at, drift = %drift.describe(), "drift reported");
                if !shared.dry_run {
                    writer
                        .event(
                            &at,
                            true,
                            "DriftReported",
                            "Report",
                            &format!("{at} drifted ({}); policy is report", drift.describe()),
                        )
                        .await;
                }
                state.reported.insert(at, drift.clone());
            }
            Ok(None)
        }
        Action::Apply {
            object,
            reason,
            force,
        } => {
            tracing::info!(cluster, object = %at, ?reason, dry_run = shared.dry_run, "apply");
            if shared.dry_run {
                return Ok(None);
            }
            match writer.apply(object, *force).await {
                Ok(served) => {
                    shared.metrics.count_apply(cluster);
                    if let ApplyReason::CorrectDrift(drift) = reason {
                        shared.metrics.count_drift_correction(cluster);
                        writer
                            .event(
                                &at,
                                false,
                                "DriftCorrected",
                                "Apply",
                                &format!("{at} drifted ({}); re-applied", drift.describe()),
                            )
                            .await;
                    }
                    state.reported.remove(&at);
                    state.failed.remove(&at);
                    Ok(served)
                }
                Err(e) => {
                    let reason = match e {
                        apply::Error::Conflict { .. } => "ApplyConflict",
                        _ => "ApplyFailed",
                    };
                    let message = e.to_string();
                    if state.failed.get(&at) != Some(&message) {
                        writer.event(&at, true, reason, "Apply", &message).await;
                        state.failed.insert(at, message);
                    }
                    Err(e)
                }
            }
        }
        Action::Delete { .. } => {
            tracing::info!(cluster, object = %at, dry_run = shared.dry_run, "prune");
            if shared.dry_run {
                return Ok(None);
            }
            let held = writer.delete(&at).await?;
            state.seen.remove(&at);
            shared.metrics.count_prune(cluster);
            writer
                .event(
                    &at,
                    false,
                    "Pruned",
                    "Delete",
                    &format!("{at} is no longer rendered by any claim of the fleet"),
                )
                .await;
            Ok(held)
        }
    }
}

fn update_status(shared: &Shared, name: &str, f: impl FnOnce(&mut ClusterStatus)) {
    if let Ok(mut status) = shared.status.write() {
        f(status.clusters.entry(name.to_string()).or_default());
    }
}

fn record_status(
    shared: &Shared,
    name: &str,
    revision: &str,
    plan: &ClusterPlan,
    errors: Vec<String>,
) {
    update_status(shared, name, |s| {
        s.reconciled = true;
        s.applied_revision = Some(revision.to_string());
        s.suspended = plan.suspended.map(|r| format!("{r:?}").to_lowercase());
        s.drift_policy = format!("{:?}", plan.drift_policy).to_lowercase();
        s.prune_refused = plan.prune_refused.as_ref().map(ToString::to_string);
        s.last_error = if errors.is_empty() {
            None
        } else {
            Some(errors.join("; "))
        };
        s.claims = plan
            .claims
            .iter()
            .map(|c| ClaimStatus {
                claim: c.key.to_string(),
                ready: c.readiness.ready,
                reason: c.readiness.reason.clone(),
                usage_present: c.usage_present,
                suspended: c.suspended,
                drift: c
                    .drift
                    .iter()
                    .map(|(comp, d)| format!("{}: {}", comp.as_str(), d.describe()))
                    .collect(),
            })
            .collect();
    });
}
