//! One reconcile pass over a cluster: plan from the assignment and the live view, carry
//! out the actions (server-side apply, prune, Events), then publish what the pass found to
//! the metrics and the status report, and its health to the rollout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use litemap::LiteMap;

use tracing::Instrument;

use super::apis::Served;
use super::apply::{self, Writer};
use super::live_view::LiveView;
use super::{Accepted, Assignment, Given, Report, Shared};
use crate::metrics::ErrorReason;
use crate::status::ClaimStatus;
use fleet_core::model::Cluster;
use fleet_core::reconcile::contest::contest;
use fleet_core::reconcile::{
    plan_cluster, Action, ApplyReason, ClusterInput, ClusterPlan, Drift, Inventory, LiveState,
    WriteBudget,
};
use fleet_core::render::ObjectRef;
use fleet_core::rollout::Health;

/// What a worker remembers across sessions.
#[derive(Default)]
pub struct Memory {
    /// Objects seen on the cluster, so that their absence is a deletion by hand.
    pub seen: LiteMap<ObjectRef, ()>,
    /// Drift already reported, so a report is an Event once, not on every pass.
    pub reported: BTreeMap<ObjectRef, Drift>,
    /// The last failed apply per object, so a conflict that persists across retries is an
    /// Event once (the error metric counts every attempt), until an apply succeeds.
    pub failed: BTreeMap<ObjectRef, String>,
    /// The desired hash this agent last applied to each object: a different one on the
    /// object later was written by someone else.
    pub applied: LiteMap<ObjectRef, String>,
    /// Writes that undo someone else's change, per object: bounded, so no fight loops.
    pub budget: WriteBudget,
    /// Objects whose contested writes are held now, so that is said once per episode.
    pub held: BTreeSet<ObjectRef>,
    /// What discovery last answered; `None` until it was asked. A session asks it first
    /// only where an API was missing at the last answer (see `session::run`).
    pub served: Option<Served>,
}

/// What one reconcile pass found.
pub struct Outcome {
    pub failed: usize,
    /// Whether the pass's calls reached the server; `None` when it made none.
    pub reached: Option<bool>,
    /// Why a call did not reach it, down to the cause, for the status to say.
    pub unreached: Option<String>,
    /// The cluster left the fleet and nothing the entry owns is left on it.
    pub left: bool,
}

/// One reconcile pass. `entry` is the cluster's entry as last seen, which a cluster that
/// left the fleet is still reached and emptied through; `usage_api`, whether the cluster
/// serves Usages at all.
#[allow(
    clippy::too_many_arguments,
    reason = "one pass's inputs, each from elsewhere"
)]
pub async fn run(
    name: &str,
    entry: &Cluster,
    shared: &Shared,
    client: &super::client::ClusterClient,
    assignment: &Assignment,
    usage_api: bool,
    view: &mut LiveView,
    state: &mut Memory,
) -> Outcome {
    let nothing = Outcome {
        failed: 0,
        reached: None,
        unreached: None,
        left: false,
    };
    // A cluster that left is emptied at once, whatever wave it was in.
    let leaving = assignment.cluster(name).is_none();
    let given = if leaving {
        &assignment.newest
    } else {
        let Some(given) = given_revision(name, shared, assignment) else {
            return nothing;
        };
        given
    };
    let cluster = if leaving {
        entry
    } else {
        let Some(cluster) = given.fleet.clusters.get(name) else {
            return nothing;
        };
        cluster
    };
    let former_names = &assignment.newest.former_names;
    // The same inputs plan the same: what the last pass planned, when nothing changed since,
    // is carried out and published again as planning it anew would have been.
    let settled = if leaving {
        None
    } else {
        view.take_settled(assignment)
    };
    let plan = settled.unwrap_or_else(|| {
        let seen = &state.seen;
        let is_seen = move |at: &ObjectRef| seen.contains_key(at);
        plan_cluster(&ClusterInput {
            fleet: &given.fleet,
            cluster,
            live: &view.live,
            seen: &is_seen,
            guard_prune: !assignment.newest.has_baseline,
            allow_mass_prune: shared.allow_mass_prune,
            former_names,
            usage_api,
            applied_by: Some(&shared.identity),
        })
    });
    let inventory = Inventory {
        fleet: &given.fleet.settings.name,
        former: former_names,
        cluster: &cluster.name,
    };
    if leaving && plan.actions.is_empty() && !view.live.values().any(|o| inventory.owns(o)) {
        return Outcome {
            left: true,
            ..nothing
        };
    }
    // The pass's span, made only when something may be logged under it: planning logs
    // nothing, and most passes (a Release's status moving on) neither write nor log at info.
    // Making and closing a span on every pass was about 1% of a cold start.
    let span = if plan.actions.is_empty()
        && plan.prune_refused.is_none()
        && !tracing::enabled!(tracing::Level::DEBUG)
    {
        tracing::Span::none()
    } else {
        tracing::info_span!("reconcile", cluster = %name, revision = %short(&assignment.newest.revision))
    };
    let started = Instant::now();
    let writer = Writer {
        client: client.clone(),
        cluster: name.to_string(),
        timeout: shared.call_timeout,
        applied_by: shared.identity.clone(),
        fence: shared.fence.clone(),
        refused: Default::default(),
    };
    // Only passes that write hold a permit: reading the plan is free. The writes' future is
    // made once the permit is held, and boxed: a cold start queues nearly every cluster
    // here, and each would otherwise wait in a future with room for its writes (about 6 KiB,
    // a whole pass's 12 KiB before).
    let permit = if plan.actions.iter().any(Action::writes) && !shared.dry_run {
        shared.semaphore.acquire().await.ok()
    } else {
        None
    };
    let mut carried =
        Box::pin(carry_out_all(shared, &writer, &plan, view, state).instrument(span.clone())).await;
    drop(permit);
    for (at, holder) in &plan.held {
        shared
            .metrics
            .count_error(name, ErrorReason::OwnedElsewhere);
        carried.errors.push(format!(
            "{at} is not applied: it exists already, labelled as {holder}'s"
        ));
    }
    shared
        .metrics
        .observe_duration(name, started.elapsed().as_secs_f64());
    let outcome = Outcome {
        failed: carried.errors.len(),
        reached: if carried.unreachable.is_some() {
            Some(false)
        } else {
            carried.answered.then_some(true)
        },
        unreached: carried.unreachable.clone(),
        left: false,
    };
    if leaving {
        record_status(
            shared,
            name,
            &given.revision,
            &plan,
            carried.errors,
            outcome.reached,
        );
    } else {
        let fenced = writer.refused.load(std::sync::atomic::Ordering::Relaxed);
        Box::pin(
            publish(
                name,
                shared,
                given,
                &plan,
                carried.errors,
                outcome.reached,
                fenced,
            )
            .instrument(span),
        )
        .await;
        view.settle(assignment, plan);
    }
    outcome
}

/// The revision the rollout gives this cluster; `None`, with the status saying why, when
/// it gives none. A later wave keeps the previous revision (drift correction included)
/// until its turn.
fn given_revision<'a>(
    name: &str,
    shared: &Shared,
    assignment: &'a Assignment,
) -> Option<&'a Arc<Accepted>> {
    match &assignment.given {
        Given::Revision(given) => Some(given),
        Given::Waiting { wave } => {
            let wave = wave.clone();
            shared.update_status(name, |s| {
                s.reconciled = true;
                s.last_error = None;
                s.wave = wave;
            });
            None
        }
        Given::Missing(e) => {
            shared.update_status(name, |s| {
                s.reconciled = true;
                s.last_error = Some(format!("not reconciled: {e}"));
            });
            None
        }
    }
}

/// A revision as logs show it.
fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// What carrying out a plan's actions came to.
struct Carried {
    errors: Vec<String>,
    /// A call could not reach the server, whatever the watch said last: the first such
    /// error.
    unreachable: Option<String>,
    /// A write was answered by the server.
    answered: bool,
}

/// Carries out the plan's actions. Takes no write permit: `run` holds one around it for a
/// plan that writes.
async fn carry_out_all(
    shared: &Shared,
    writer: &Writer,
    plan: &ClusterPlan,
    view: &mut LiveView,
    state: &mut Memory,
) -> Carried {
    let name = writer.cluster.as_str();
    let mut carried = Carried {
        errors: Vec::new(),
        unreachable: None,
        answered: false,
    };
    let now = std::time::Instant::now();
    state.budget.settle(now);
    let mut still_held = BTreeSet::new();
    for action in &plan.actions {
        let at = action.object_ref();
        if let Some(contest) = contest(
            action,
            view.live.get(&at),
            state.applied.get(&at).map(String::as_str),
        ) {
            if let Err(wait) = state.budget.take(&at, now) {
                still_held.insert(at.clone());
                let error = format!(
                    "{at}: another writer keeps changing it ({contest}); holding this agent's writes to it, next in {}s",
                    wait.as_secs().max(1)
                );
                shared.metrics.count_error(name, ErrorReason::AnotherWriter);
                if state.held.insert(at.clone()) {
                    tracing::warn!(cluster = %name, object = %at, %contest, "another writer keeps changing an object; writes to it held");
                    if !shared.dry_run {
                        writer
                            .event(&at, true, "AnotherWriter", "Apply", &error)
                            .await;
                    }
                }
                carried.errors.push(error);
                continue;
            }
        }
        let span =
            tracing::info_span!("action", claim = %claim_of(action, &view.live), object = %at);
        match carry_out(shared, writer, action, state)
            .instrument(span)
            .await
        {
            // What the server answered stands until the watch says otherwise, so a pass
            // woken by the next event does not apply the same object again.
            Ok(Some(served)) => {
                carried.answered |= action.writes() && !shared.dry_run;
                view.served(served);
            }
            Ok(None) => {
                carried.answered |= action.writes() && !shared.dry_run;
                if matches!(action, Action::Delete { .. }) && !shared.dry_run {
                    view.deleted(&action.object_ref());
                }
            }
            Err(e) => {
                if matches!(e.reason(), ErrorReason::Unreachable | ErrorReason::Timeout) {
                    carried.unreachable.get_or_insert_with(|| e.to_string());
                }
                shared.metrics.count_error(name, e.reason());
                tracing::warn!(cluster = %name, error = %e, "action failed");
                carried.errors.push(e.to_string());
            }
        }
    }
    state.held.retain(|at| still_held.contains(at));
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
    carried
}

/// What the pass found, to the metrics, the status report and the rollout; not to the
/// rollout when the fence refused a write (`fenced`): the pass was cut short by this
/// replica losing the cluster, which says nothing of the cluster's health.
async fn publish(
    name: &str,
    shared: &Shared,
    given: &Accepted,
    plan: &ClusterPlan,
    errors: Vec<String>,
    reached: Option<bool>,
    fenced: bool,
) {
    shared.metrics.record_plan(name, plan);
    for claim in &plan.claims {
        tracing::debug!(claim = %claim.key, ready = claim.readiness.is_ready(), reason = claim.readiness.reason().unwrap_or_default(), "claim");
    }
    tracing::debug!(
        actions = plan.actions.len(),
        failed = errors.len(),
        "pass done"
    );
    let health = rollout_health(given, plan, &errors);
    record_status(shared, name, &given.revision, plan, errors, reached);
    if fenced {
        return;
    }
    let report = Report {
        cluster: name.to_string(),
        health,
    };
    // The agent is gone only when it stops, and then no report matters.
    let _ = shared.reports.send(report);
}

/// `<namespace>/<name>` of the claim an action is for, from the object's `hops.ops.com.ai/psql`
/// label (the desired object's, else the live one's).
fn claim_of(action: &Action, live: &LiveState) -> String {
    let at = action.object_ref();
    let name = match action {
        Action::Apply { object, .. } => object.claim.clone(),
        _ => live
            .get(&at)
            .and_then(|o| o.claim_name())
            .map(str::to_string),
    };
    format!("{}/{}", at.namespace, name.as_deref().unwrap_or("?"))
}

/// How the pass went, for the rollout gate: ready only when nothing was left to write and
/// every claim is ready (which counts a Release's `Ready=True` only when it was reported
/// for its current spec).
fn rollout_health(given: &Accepted, plan: &ClusterPlan, errors: &[String]) -> Health {
    let mut waiting: Vec<String> = Vec::new();
    if let Some(s) = plan.suspended {
        waiting.push(format!("suspended ({s:?})").to_lowercase());
    }
    if plan.actions.iter().any(Action::writes) {
        waiting.push("changes still being applied".into());
    }
    for claim in &plan.claims {
        if let Some(reason) = claim.readiness.reason() {
            waiting.push(format!("claim {}: {reason}", claim.key));
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
    state: &mut Memory,
) -> Result<Option<fleet_core::reconcile::LiveObject>, apply::Error> {
    let at = action.object_ref();
    let cluster = writer.cluster.as_str();
    match action {
        Action::ReportDrift { drift, .. } => {
            if state.reported.get(&at) != Some(drift) {
                tracing::warn!(cluster, object = %at, drift = %drift.describe(), "drift reported");
                shared
                    .metrics
                    .count_drift_found(cluster, drift.manager_kind());
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
                        shared
                            .metrics
                            .count_drift_found(cluster, drift.manager_kind());
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
                    state.applied.insert(at, object.hash.clone());
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

fn record_status(
    shared: &Shared,
    name: &str,
    revision: &str,
    plan: &ClusterPlan,
    errors: Vec<String>,
    reached: Option<bool>,
) {
    shared.update_status(name, |s| {
        s.reconciled = true;
        s.applied_revision = Some(revision.to_string());
        s.suspended = plan.suspended.map(|r| format!("{r:?}").to_lowercase());
        s.drift_policy = format!("{:?}", plan.drift_policy).to_lowercase();
        s.prune_refused = plan.prune_refused.as_ref().map(ToString::to_string);
        s.last_error = if !errors.is_empty() {
            Some(errors.join("; "))
        } else if reached.is_none() && !s.reachable {
            // A pass that called nothing knows nothing new of a cluster that is down: the
            // session's word on why stands (it was cleared for a moment here before).
            s.last_error.take()
        } else {
            None
        };
        s.claims = plan
            .claims
            .iter()
            .map(|c| ClaimStatus {
                claim: c.key.to_string(),
                ready: c.readiness.is_ready(),
                reason: c.readiness.reason(),
                usage_present: c.usage_present,
                suspended: c.suspended,
                drift: c
                    .drift
                    .iter()
                    .map(|(comp, d)| format!("{}: {}", comp.as_str(), d.describe()))
                    .collect(),
                unknown_since: None,
            })
            .collect();
    });
}
