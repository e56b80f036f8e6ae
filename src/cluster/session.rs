//! One connection's life: the two watches feed the [`LiveView`], and a [`pass`] runs when
//! the assignment changes, the view does, a failed pass is due again, or the resync tick
//! says so. The kubeconfig is re-checked when the credentials directory changes. The
//! session owns the cluster's reachability: the watch and the passes that made calls both
//! report here.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use tokio::sync::watch;

use super::client::ClusterClient;
use super::live_view::LiveView;
use super::pass::{self, Memory, Outcome};
use super::watch::Seen;
use super::{apis, apply, identity, kubeconfig, Assignment, Shared};
use crate::error_chain;
use crate::metrics::ErrorReason;
use fleet_core::api::LABEL_FLEET;
use fleet_core::model::Cluster;
use fleet_core::reconcile::backoff::{pass_due, Wake};
use fleet_core::reconcile::Backoff;
use fleet_core::render::ObjectKind;

/// Why a session ended.
pub enum End {
    Stop,
    /// The kubeconfig changed or the cluster's entry did: connect again at once.
    Reconnect,
    /// The watches ended: connect again after a backoff.
    Failed,
    /// The cluster left the fleet and nothing the entry owned is left on it.
    Left,
}

/// A client built from a kubeconfig, and what is needed to notice the file change.
pub struct Connection {
    pub client: ClusterClient,
    pub kubeconfig: kubeconfig::Source,
    pub print: Option<[u8; 32]>,
    /// Moves when something in the credentials directory (or among the Cluster API
    /// kubeconfig Secrets) changed: the kubeconfig is then read and compared with `print`
    /// (never on a timer).
    pub changes: watch::Receiver<u64>,
}

/// The cluster's reachability as last reported, and why the watch failed.
#[derive(Default)]
struct Reachability {
    current: Option<bool>,
    watch_failure: Option<String>,
    /// Whether the watch last failed to reach the server at all (not an answer from it).
    watch_unreached: bool,
}

#[allow(
    clippy::too_many_arguments,
    reason = "one session's inputs, each from elsewhere"
)]
pub async fn run(
    name: &str,
    entry: &Cluster,
    shared: &Arc<Shared>,
    connection: Connection,
    assignment: &mut watch::Receiver<Assignment>,
    stop: &mut watch::Receiver<bool>,
    memory: &mut Memory,
) -> End {
    let client = connection.client;
    let mut changes = connection.changes;
    let mut changes_open = true;
    let started_with = assignment.borrow().clone();
    // Every object any fleet applied, not only this one's: the inventory labels then say
    // what is ours, and an object another fleet or entry holds is seen before it would be
    // applied over. A rename changes no watch.
    let selector = LABEL_FLEET.to_string();
    // The calls made once, and the pass, are boxed: a session is held in its cluster's task
    // for the connection's life, sized by the largest future it awaits (the pass's nested
    // calls were most of ten KiB per cluster).
    let mut entered = Box::pin(identity::read(&client, shared.call_timeout))
        .await
        .map(|uid| shared.reached.enter(&uid, name));
    let mut refused_for: Option<String> = None;
    let stream_of = |kind: ObjectKind| {
        super::watch::watch(client.clone(), kind, selector.clone())
            .default_backoff()
            .map(move |e| (kind, e))
            .boxed()
    };
    // Discovery is asked first only where it last found an API missing. Elsewhere the
    // watches' own lists say as much: a 404 from one of them is when it is asked (below).
    // Two requests fewer for each cluster that serves both.
    let served = match memory.served {
        Some(last) if last != apis::Served::ALL => {
            let now = discover(&client, shared, memory).await;
            report_missing(shared, name, &now);
            now
        }
        _ => apis::Served::ALL,
    };
    // Only what is served is watched: a watch on a missing API fails for good, and a
    // cluster without Releases gets no pass at all until its APIs are there.
    let kinds: Vec<ObjectKind> = match (served.releases, served.usages) {
        (false, _) => Vec::new(),
        (true, false) => vec![ObjectKind::Release],
        (true, true) => vec![ObjectKind::Release, ObjectKind::Usage],
    };
    let mut events = if kinds.is_empty() {
        futures::stream::pending().boxed()
    } else {
        futures::stream::select_all(kinds.iter().map(|k| stream_of(*k))).boxed()
    };
    let mut view = LiveView::watching(kinds.len());
    let mut resync = tokio::time::interval(shared.resync);
    // The APIs a cluster lacks are asked for at the source's pace, not the resync's: a
    // provider installed by hand is found as soon as a new revision would be. Only such a
    // cluster holds this timer (what is served does not change within a session).
    let mut recheck = (served != apis::Served::ALL).then(|| {
        tokio::time::interval_at(tokio::time::Instant::now() + shared.recheck, shared.recheck)
    });
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut attempt = 0u32;
    let backoff = Backoff::default();
    let mut reach = Reachability::default();
    if kinds.is_empty() {
        // Discovery answered, so the server is there; no watch will say so.
        reach.set(shared, name, true, None, None);
    }
    loop {
        let mut due = false;
        tokio::select! {
            _ = stop.changed() => return End::Stop,
            changed = assignment.changed() => {
                if changed.is_err() { return End::Stop; }
                let now = assignment.borrow().clone();
                if now.cluster(name).is_none() && !now.leaving_prunes() { return End::Reconnect; }
                if now.reconnects(&started_with, name) { return End::Reconnect; }
                due = true;
            }
            event = events.next() => match event {
                Some((kind, Ok(seen))) => {
                    due = take(&mut view, kind, seen, memory);
                    // Take every event already waiting, then plan once (if any changed the
                    // view: the echoes of this agent's own writes do not).
                    while let Some(Some((kind, Ok(seen)))) = events.next().now_or_never() {
                        due |= take(&mut view, kind, seen, memory);
                    }
                    reach.set(shared, name, true, None, None);
                }
                Some((_, Err(e))) => {
                    if answered_code(&e) == Some(404) {
                        // An API watched here is not served (or no longer is): the next
                        // session watches what discovery says is, and reports the rest.
                        if discover(&client, shared, memory).await != served {
                            tracing::info!(cluster = %name, "the cluster's APIs changed; reconnecting");
                            return End::Reconnect;
                        }
                    }
                    if !view.synced() {
                        let claims = started_with.newest.fleet.claims_of(name);
                        shared.metrics.record_unobserved(name, claims);
                    }
                    let (what, reason) = watch_error(&e);
                    let failure = format!("cluster {name}: watch failed: {what}");
                    reach.watch_failure = Some(failure.clone());
                    reach.watch_unreached = reason == ErrorReason::Unreachable;
                    reach.set(shared, name, false, Some(reason), Some(failure));
                }
                None => return End::Failed,
            },
            changed = changes.changed(), if changes_open => {
                changes_open = changed.is_ok();
                if connection.kubeconfig.fingerprint() != connection.print {
                    tracing::info!(cluster = %name, "kubeconfig changed; reconnecting");
                    return End::Reconnect;
                }
            }
            Some(_) = async { Some(recheck.as_mut()?.tick().await) }, if recheck.is_some() => {
                let now = discover(&client, shared, memory).await;
                report_missing(shared, name, &now);
                if now != served {
                    tracing::info!(cluster = %name, "the cluster's APIs changed; reconnecting");
                    return End::Reconnect;
                }
            }
            _ = resync.tick() => {
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
        let keeper = entered.as_mut().and_then(identity::Entered::refused_by);
        if keeper != refused_for {
            refused_for = keeper.clone();
            if let (Some(keeper), Some(entered)) = (&keeper, &entered) {
                let error = format!(
                    "cluster {name}: refused: cluster entry {keeper} reaches the same cluster (kube-system namespace UID {}); only {keeper} is reconciled there: remove one of the two entries",
                    entered.uid()
                );
                tracing::error!(cluster = %name, %keeper, "another cluster entry reaches the same cluster; this one is not reconciled");
                shared
                    .metrics
                    .count_error(name, ErrorReason::DuplicateCluster);
                shared.update_status(name, |s| s.last_error = Some(error));
            }
        }
        if refused_for.is_some() {
            continue;
        }
        let current = assignment.borrow().clone();
        let outcome = Box::pin(pass::run(
            name,
            entry,
            shared,
            &client,
            &current,
            served.usages,
            &mut view,
            memory,
        ))
        .await;
        if outcome.left {
            return End::Left;
        }
        if let Some(end) =
            Box::pin(reach.after_pass(shared, name, &client, &selector, &outcome)).await
        {
            return end;
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

/// Asks discovery what the cluster serves, and remembers the answer for the sessions after
/// this one.
async fn discover(client: &ClusterClient, shared: &Shared, memory: &mut Memory) -> apis::Served {
    let now = Box::pin(apis::served(client, shared.call_timeout)).await;
    memory.served = Some(now);
    now
}

/// Takes what a watch handed out into the view; whether a pass is due. A watch open again
/// after an error brings no event when nothing changed, so the pass that says the cluster
/// is back (and clears the watch's error) is run for it.
fn take(view: &mut LiveView, kind: ObjectKind, seen: Seen, memory: &mut Memory) -> bool {
    match seen {
        Seen::Event(e) => view.handle(kind, e, &mut memory.seen),
        Seen::Reopened => true,
    }
}

/// Says what the cluster lacks (status, log, metric), or that it lacks nothing now.
fn report_missing(shared: &Shared, name: &str, served: &apis::Served) {
    let missing = served.missing();
    if let Some(problem) = served.problem(name) {
        tracing::warn!(cluster = %name, missing = ?missing, "{problem}");
        shared.metrics.count_error(name, ErrorReason::MissingApi);
    }
    shared.update_status(name, |s| s.missing_apis = missing);
}

impl Reachability {
    /// `counted_as` is the error reason to count on the change to unreachable (`None` when
    /// the failed call has been counted already).
    fn set(
        &mut self,
        shared: &Shared,
        name: &str,
        now: bool,
        counted_as: Option<ErrorReason>,
        error: Option<String>,
    ) {
        if self.current == Some(now) {
            // Still unreachable, maybe for another reason now (refused, then 401): say the
            // latest one.
            if let (false, Some(error)) = (now, error) {
                shared.update_status(name, |s| s.last_error = Some(error));
            }
            return;
        }
        self.current = Some(now);
        shared.metrics.set_reachable(name, now);
        if !now {
            if let Some(reason) = counted_as {
                shared.metrics.count_error(name, reason);
            }
            tracing::warn!(cluster = %name, error = ?error, "cluster unreachable");
        }
        shared.update_status(name, |s| {
            s.reachable = now;
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    /// What a pass's calls say about the server; `Some` when the session must start over.
    async fn after_pass(
        &mut self,
        shared: &Shared,
        name: &str,
        client: &ClusterClient,
        selector: &str,
        outcome: &Outcome,
    ) -> Option<End> {
        match outcome.reached {
            // The pass's own calls are the latest word on the server.
            Some(reached) => {
                let error = (!reached).then(|| {
                    outcome
                        .unreached
                        .clone()
                        .unwrap_or_else(|| format!("cluster {name}: unreachable while applying"))
                });
                self.set(shared, name, reached, None, error);
            }
            // A pass that called nothing knows nothing new, and a watch that reconnected
            // where it left off says nothing either: no event when nothing changed (an
            // idle cluster whose API server restarted), no relist when the server lost
            // what the view holds (a store restored from an older backup answers 504 to
            // every watch from there). Once the server answers a call the watch needs
            // anyway, start over: the relist is the latest word. Until then, what the
            // watch said stands.
            None if self.current == Some(false) => {
                let probe = ListParams::default().labels(selector).limit(1);
                let answered = self.watch_unreached
                    && tokio::time::timeout(shared.call_timeout, probe_list(client, &probe))
                        .await
                        .is_ok_and(|r| r.is_ok());
                if answered {
                    tracing::info!(cluster = %name, "the API server answers again; relisting");
                    return Some(End::Reconnect);
                }
                let error = self.watch_failure.clone();
                shared.update_status(name, |s| {
                    s.reachable = false;
                    s.last_error = error.or(s.last_error.take());
                });
            }
            None => {}
        }
        None
    }
}

/// What `Api::list_metadata` asks of the Releases: whether the server answers a list.
async fn probe_list(client: &ClusterClient, params: &ListParams) -> Result<(), kube::Error> {
    let request = apply::resource_request(ObjectKind::Release, None)
        .list_metadata(params)
        .map_err(kube::Error::BuildRequest)?;
    client.call(request).await
}

/// What failed, down to its cause: the API server's code, reason and message when it
/// answered, else why it could not be reached (a refused connection, an untrusted
/// certificate); and the metric reason it counts under.
fn watch_error(e: &watcher::Error) -> (String, ErrorReason) {
    let (what, cause): (&str, &(dyn std::error::Error + 'static)) = match e {
        watcher::Error::InitialListFailed(e) => ("initial list failed", e),
        watcher::Error::WatchStartFailed(e) => ("watch could not start", e),
        watcher::Error::WatchError(s) => ("API server returned an error", s.as_ref()),
        watcher::Error::WatchFailed(e) => ("watch connection failed", e),
        _ => ("watch failed", e),
    };
    let text = error_chain::with_cause(what, cause);
    let reason = match answered_code(e) {
        Some(401 | 403) => ErrorReason::Forbidden,
        Some(_) => ErrorReason::ApiError,
        None => ErrorReason::Unreachable,
    };
    (text, reason)
}

/// The code the API server answered with, when it answered.
fn answered_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn a_watch_error_says_the_server_answer_or_the_cause_it_could_not_reach_it_for() {
        let forbidden = Status::failure("releases is forbidden: User cannot list", "Forbidden")
            .with_code(403)
            .boxed();
        let (text, reason) = watch_error(&watcher::Error::InitialListFailed(kube::Error::Api(
            forbidden,
        )));
        assert_eq!(
            text,
            "initial list failed: API server answered 403 Forbidden: releases is forbidden: User cannot list"
        );
        assert_eq!(reason, ErrorReason::Forbidden);

        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: CaUsedAsEndEntity",
        );
        let (text, reason) = watch_error(&watcher::Error::InitialListFailed(kube::Error::Service(
            Box::new(tls),
        )));
        assert_eq!(
            text,
            "initial list failed: ServiceError: invalid peer certificate: CaUsedAsEndEntity"
        );
        assert_eq!(reason, ErrorReason::Unreachable);

        let gone = Status::failure("too old resource version", "Expired").with_code(410);
        let (text, reason) = watch_error(&watcher::Error::WatchError(gone.boxed()));
        assert_eq!(
            text,
            "API server returned an error: API server answered 410 Expired: too old resource version"
        );
        assert_eq!(reason, ErrorReason::ApiError);
    }
}
