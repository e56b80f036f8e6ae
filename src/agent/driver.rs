//! The rollout driver: it holds the [`State`] the pure `fleet_core::rollout` decides on,
//! says which revision each cluster is given (the agent passes it on in the worker's
//! assignment), takes the workers' health reports, moves the rollout on with the clock, and
//! publishes every wave transition to the log, the metrics, the status report, the saved
//! state and any [`WaveObserver`] (commit statuses).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::state_store::{Keeper, Loaded, Settled};
use crate::cluster::{Accepted, Given};
use crate::metrics::{Metrics, WaveFacts};
use crate::status::{ClusterStatus, RolloutStatus, StatusReport};
use fleet_core::fleetdir::{load, FileTree};
use fleet_core::rollout::gates::{GateCheck, GateReading, Readings};
use fleet_core::rollout::{Health, State, Target, Transition, WaveState};

/// Told of every wave transition, in order. Must not block: an observer that talks to
/// the network hands the work to a task of its own.
pub trait WaveObserver: Send + Sync {
    fn transition(&self, transition: &Transition);
}

#[derive(Default)]
struct Inner {
    state: State,
    /// The revisions some cluster is given, loaded.
    fleets: BTreeMap<String, Arc<Accepted>>,
    /// Revisions kept on disk that no longer load, with why.
    broken: BTreeMap<String, String>,
    health: BTreeMap<String, Health>,
    /// The latest answer to each metric gate.
    gates: Readings,
    /// Each cluster's wave in the newest revision.
    wave_of: BTreeMap<String, String>,
    /// A report changed some cluster's health since the last tick.
    reported: bool,
    /// The rollbacks counted in `psql_fleet_rollbacks_total`: (revision, wave, when).
    rollbacks: BTreeSet<(String, String, u64)>,
}

pub struct RolloutDriver {
    inner: Mutex<Inner>,
    keeper: Option<Arc<dyn Keeper>>,
    wake: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    status: Arc<RwLock<StatusReport>>,
    observers: Vec<Arc<dyn WaveObserver>>,
    /// The clusters whose entry was added to the status report since the last tick; the
    /// tick fills in their wave and pending revision.
    joined: Arc<Joined>,
    /// Moves whenever the workers' reports were forgotten (a resume, or taking the rollout
    /// up): every worker's assignment moves with it, so each cluster reports again at once
    /// rather than at its next resync.
    asked: AtomicU64,
}

/// Why an operator's halt or resume did not take.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("rollout state unavailable")]
    Unavailable,
    #[error("no rollout: no revision served yet")]
    NoRollout,
    #[error(transparent)]
    Refused(#[from] fleet_core::rollout::ControlError),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl RolloutDriver {
    /// Starts from what was kept (`loaded`), handing every change on to `keeper`; without
    /// one (a dry run) the state lives in memory only.
    pub fn open(
        keeper: Option<Arc<dyn Keeper>>,
        loaded: Loaded,
        metrics: Arc<Metrics>,
        status: Arc<RwLock<StatusReport>>,
        observers: Vec<Arc<dyn WaveObserver>>,
    ) -> RolloutDriver {
        let (wake, _) = watch::channel(0);
        let this = RolloutDriver {
            inner: Mutex::new(Inner::default()),
            keeper,
            wake,
            metrics,
            status,
            observers,
            joined: Arc::default(),
            asked: AtomicU64::new(0),
        };
        this.adopt(loaded);
        this
    }

    /// Takes up the rollout where `loaded` says it stood (at start, or when this replica
    /// begins to lead): what was decided before is replaced, health is judged afresh.
    pub fn adopt(&self, loaded: Loaded) {
        let (fleets, broken) = read_back(loaded.revisions);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        // Rollbacks made before this replica took over were counted where they were made.
        let rollbacks = rollbacks_in(&loaded.state);
        *inner = Inner {
            state: loaded.state,
            fleets,
            broken,
            rollbacks,
            ..Inner::default()
        };
        self.ask_for_reports();
        let transitions = inner.state.restarted(now_ms());
        if transitions.is_empty() {
            self.publish(&inner);
            self.wake.send_modify(|n| *n = n.wrapping_add(1));
        } else {
            self.finish(&mut inner, transitions);
        }
    }

    /// Under `--shards`, on a replica that does not lead: what each cluster is given is
    /// what the leader decided, as `loaded` from where it keeps the state; this replica
    /// decides nothing, keeps nothing and notifies no observer. Revisions known already
    /// and left out of `loaded.revisions` are kept.
    pub fn follow(&self, loaded: Loaded) {
        let (mut fleets, broken) = read_back(loaded.revisions);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let keep = loaded.state.revisions();
        for (revision, fleet) in &inner.fleets {
            if keep.contains(revision) && !broken.contains_key(revision) {
                fleets
                    .entry(revision.clone())
                    .or_insert_with(|| fleet.clone());
            }
        }
        let wave_of = loaded
            .state
            .rollout
            .iter()
            .flat_map(|r| r.waves.iter())
            .flat_map(|w| w.clusters.keys().map(|c| (c.clone(), w.name.clone())))
            .collect();
        *inner = Inner {
            state: loaded.state,
            fleets,
            broken,
            wave_of,
            ..Inner::default()
        };
        self.publish_status(&inner, None);
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The revisions this replica has the files of.
    pub fn known_revisions(&self) -> BTreeSet<String> {
        self.inner
            .lock()
            .map(|inner| inner.fleets.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Resolves once every decision so far is kept (true), or after a while without.
    pub fn settled(&self) -> Settled {
        match &self.keeper {
            Some(k) => k.settled(),
            None => Box::pin(async { true }),
        }
    }

    /// Changes whenever what some cluster is given may have changed: the agent then sends
    /// the workers their assignments again.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// How many times the workers' reports were forgotten: for their assignments, and for
    /// the leader to read the other shards' health whole again.
    pub fn asked(&self) -> u64 {
        self.asked.load(Ordering::Acquire)
    }

    /// The reports are forgotten: the next wake sends every worker a new assignment.
    fn ask_for_reports(&self) {
        self.asked.fetch_add(1, Ordering::AcqRel);
    }

    /// Where the workers say they added their cluster to the status report (see
    /// [`tick`](RolloutDriver::tick)).
    pub fn joined(&self) -> Arc<Joined> {
        self.joined.clone()
    }

    /// A new revision is served: keep its files, and roll it out.
    pub fn accept(&self, accepted: &Arc<Accepted>, tree: &FileTree) {
        if let Some(keeper) = &self.keeper {
            keeper.fleet_named(&accepted.fleet.settings.name);
            keeper.save_revision(&accepted.revision, tree);
        }
        let target = Target::of(&accepted.revision, &accepted.fleet);
        for wave in &target.waves {
            self.metrics.know_wave(&wave.name);
            for cluster in &wave.clusters {
                self.metrics.set_cluster_wave(cluster, &wave.name);
            }
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner
            .fleets
            .insert(accepted.revision.clone(), accepted.clone());
        inner.broken.remove(&accepted.revision);
        let transitions = inner.state.begin(&target, now_ms());
        inner.wave_of = target
            .waves
            .iter()
            .flat_map(|w| w.clusters.iter().map(|c| (c.clone(), w.name.clone())))
            .collect();
        self.finish(&mut inner, transitions);
    }

    /// What `cluster` is given now.
    pub fn given(&self, cluster: &str) -> Given {
        let Ok(inner) = self.inner.lock() else {
            return Given::Missing("rollout state unavailable".into());
        };
        let Some(revision) = inner.state.given(cluster) else {
            return Given::Waiting {
                wave: Self::waiting_for(&inner, cluster),
            };
        };
        match inner.fleets.get(revision) {
            Some(a) => Given::Revision(a.clone()),
            None => Given::Missing(
                inner
                    .broken
                    .get(revision)
                    .cloned()
                    .unwrap_or_else(|| format!("revision {revision} is not known")),
            ),
        }
    }

    /// The wave a waiting cluster waits for.
    fn waiting_for(inner: &Inner, cluster: &str) -> Option<String> {
        let r = inner.state.rollout.as_ref()?;
        if inner.state.given(cluster) == Some(r.revision.as_str()) {
            return None;
        }
        let wave = r.waves.iter().find(|w| w.clusters.contains_key(cluster))?;
        Some(wave.name.clone())
    }

    /// A worker's pass at some revision ended. The rollout moves on at the next [`tick`]:
    /// judging the waves and publishing their status is linear in the fleet, so doing it
    /// on every report made a cold start of 1,000 clusters quadratic (7 s became 14 s).
    ///
    /// [`tick`]: RolloutDriver::tick
    pub fn report(&self, cluster: &str, health: Health) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.health.get(cluster) != Some(&health) {
            inner.health.insert(cluster.to_string(), health);
            inner.reported = true;
        }
    }

    /// Moves the rollout on with the clock (bake times and timeouts) and the workers' reports.
    /// A tick with nothing to move on costs nothing: judging and publishing is linear in the
    /// fleet, and at steady state (the rollout complete or halted with no straggler, no
    /// health changed, no cluster new to the status report) it would publish what is
    /// published already.
    pub fn tick(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            let joined = self.joined.take();
            if inner.state.moves_with_clock() || inner.reported || !joined.is_empty() {
                inner.reported = false;
                self.advance(&mut inner, &joined);
            }
        }
    }

    /// Judges the waves; `joined` are the clusters new to the status report.
    fn advance(&self, inner: &mut Inner, joined: &[String]) {
        let unreachable = self.unreachable();
        let Inner {
            state,
            health,
            gates,
            ..
        } = inner;
        let transitions = state.advance_judging(health, &unreachable, gates, now_ms());
        if transitions.is_empty() {
            // The reason a wave waits may have changed, and the clusters new to the status
            // report have no wave yet. Nothing else has: what a cluster is given changes
            // only with a transition, which publishes every cluster's.
            self.publish_status(inner, Some(joined));
        } else {
            self.finish(inner, transitions);
        }
    }

    /// The metric gate queries to ask Prometheus now.
    pub fn gate_checks(&self) -> Vec<GateCheck> {
        self.inner
            .lock()
            .map(|inner| inner.state.gate_checks())
            .unwrap_or_default()
    }

    /// Prometheus's answer to a gate: judged at once, so that no failing answer is
    /// overwritten by the next before a tick sees it (answers come one interval apart).
    pub fn gate_result(&self, reading: GateReading) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let key = (reading.wave.clone(), reading.gate.clone());
        inner.gates.insert(key, reading);
        self.advance(&mut inner, &[]);
    }

    /// The clusters the workers report unreachable now (in the status they keep), which a
    /// wave may leave behind as stragglers.
    fn unreachable(&self) -> BTreeSet<String> {
        self.status
            .read()
            .map(|s| s.clusters.unreachable().clone())
            .unwrap_or_default()
    }

    /// `psql-fleet rollout halt`.
    pub fn halt(&self, reason: &str) -> Result<RolloutStatus, ControlError> {
        let mut inner = self.inner.lock().map_err(|_| ControlError::Unavailable)?;
        let transitions = inner.state.halt(reason, now_ms())?;
        self.finish(&mut inner, transitions);
        self.current(&inner)
    }

    /// `psql-fleet rollout approve <wave>`, by the control token named `who`.
    pub fn approve(&self, wave: &str, who: &str) -> Result<RolloutStatus, ControlError> {
        let mut inner = self.inner.lock().map_err(|_| ControlError::Unavailable)?;
        let transitions = inner.state.approve(wave, who, now_ms())?;
        self.finish(&mut inner, transitions);
        self.current(&inner)
    }

    /// `psql-fleet rollout undo [wave]`, by the control token named `who`.
    pub fn undo(
        &self,
        wave: Option<&str>,
        who: &str,
        reason: &str,
    ) -> Result<RolloutStatus, ControlError> {
        let mut inner = self.inner.lock().map_err(|_| ControlError::Unavailable)?;
        let transitions = inner.state.undo(wave, who, reason, now_ms())?;
        self.finish(&mut inner, transitions);
        self.current(&inner)
    }

    /// `psql-fleet rollout resume`.
    pub fn resume(&self) -> Result<RolloutStatus, ControlError> {
        let mut inner = self.inner.lock().map_err(|_| ControlError::Unavailable)?;
        let transitions = inner.state.resume(now_ms())?;
        // The reports that failed the wave must not fail it again: it is judged on passes
        // made after the resume.
        inner.health.clear();
        inner.gates.clear();
        self.ask_for_reports();
        self.finish(&mut inner, transitions);
        self.current(&inner)
    }

    pub fn status(&self) -> Option<RolloutStatus> {
        let inner = self.inner.lock().ok()?;
        self.current(&inner).ok()
    }

    /// The revision and wave that wait for a person's approval, if one does.
    pub fn awaiting_approval(&self) -> Option<(String, String)> {
        let inner = self.inner.lock().ok()?;
        let r = inner.state.rollout.as_ref()?;
        if r.halted.is_some() {
            return None;
        }
        r.waves
            .iter()
            .find(|w| w.state == WaveState::AwaitingApproval)
            .map(|w| (r.revision.clone(), w.name.clone()))
    }

    fn current(&self, inner: &Inner) -> Result<RolloutStatus, ControlError> {
        inner
            .state
            .rollout
            .as_ref()
            .map(RolloutStatus::of)
            .ok_or(ControlError::NoRollout)
    }

    /// Logs, notifies, forgets revisions no cluster needs, saves, publishes, wakes.
    fn finish(&self, inner: &mut Inner, transitions: Vec<Transition>) {
        for t in &transitions {
            let revision = t.revision.get(..12).unwrap_or(&t.revision);
            // The description may hold an operator's reason or a cluster's error text: a
            // field, so that the log format escapes it, never part of the message.
            match t.state {
                WaveState::Failed | WaveState::Halted => {
                    tracing::warn!(%revision, wave = %t.wave, state = t.state.as_str(), description = %t.description, "rollout wave")
                }
                _ => {
                    tracing::info!(%revision, wave = %t.wave, state = t.state.as_str(), description = %t.description, "rollout wave")
                }
            }
            for o in &self.observers {
                o.transition(t);
            }
        }
        for key in rollbacks_in(&inner.state) {
            if inner.rollbacks.insert(key.clone()) {
                self.metrics.count_rollback(&key.1);
            }
        }
        let keep = inner.state.revisions();
        inner.fleets.retain(|r, _| keep.contains(r));
        if let Some(keeper) = &self.keeper {
            keeper.save(&inner.state);
            keeper.retain(&keep);
        }
        self.publish(inner);
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn publish(&self, inner: &Inner) {
        if let Some(r) = &inner.state.rollout {
            let waves: Vec<WaveFacts> = r
                .waves
                .iter()
                .map(|w| WaveFacts {
                    name: w.name.clone(),
                    state: w.state,
                    batch: if w.batches.is_empty() { 0 } else { w.batch + 1 },
                    batches: w.batches.len(),
                    stragglers: w.stragglers.len(),
                })
                .collect();
            self.metrics.set_rollout_waves(&waves);
        }
        self.publish_status(inner, None);
    }

    /// The rollout's status, and the wave and pending revision of `clusters` in the status
    /// report (of every cluster in it when `None`).
    fn publish_status(&self, inner: &Inner, clusters: Option<&[String]>) {
        let rollout = inner.state.rollout.as_ref();
        let Ok(mut s) = self.status.write() else {
            return;
        };
        s.rollout = rollout.map(RolloutStatus::of);
        // Changed only where it differs: a status read may hold the cluster's status, which
        // a change copies.
        let fill = |name: &str, c: &mut Arc<ClusterStatus>| {
            let wave = inner.wave_of.get(name);
            let pending = rollout
                .filter(|r| inner.state.given(name) != Some(r.revision.as_str()))
                .filter(|r| r.waves.iter().any(|w| w.clusters.contains_key(name)))
                .map(|r| &r.revision);
            if c.wave.as_ref() != wave || c.pending_revision.as_ref() != pending {
                let c = Arc::make_mut(c);
                c.wave = wave.cloned();
                c.pending_revision = pending.cloned();
            }
        };
        match clusters {
            None => {
                // Every cluster is filled in, those that joined too: a replica that only
                // follows (under --shards) never ticks, and would keep their names for good.
                // Taken under the status lock, under which the workers add theirs.
                self.joined.take();
                s.clusters.change_all(fill);
            }
            Some(names) => {
                for name in names {
                    s.clusters.change(name, |c| fill(name, c));
                }
            }
        }
    }
}

/// The clusters added to the status report since the rollout's last tick: their wave and
/// pending revision are filled in then. Named, so that a tick fills in only theirs.
#[derive(Default)]
pub struct Joined(Mutex<Vec<String>>);

impl Joined {
    pub fn push(&self, cluster: &str) {
        if let Ok(mut j) = self.0.lock() {
            j.push(cluster.to_string());
        }
    }

    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut j| std::mem::take(&mut *j))
            .unwrap_or_default()
    }
}

/// The revisions read back, loaded (or why not).
fn read_back(
    revisions: BTreeMap<String, Result<fleet_core::fleetdir::FileTree, String>>,
) -> (BTreeMap<String, Arc<Accepted>>, BTreeMap<String, String>) {
    let mut fleets = BTreeMap::new();
    let mut broken = BTreeMap::new();
    for (revision, tree) in revisions {
        let fleet = tree.and_then(|tree| {
            load(&tree)
                .fleet
                .ok_or_else(|| format!("kept revision {revision} no longer validates"))
        });
        match fleet {
            Ok(fleet) => {
                fleets.insert(
                    revision.clone(),
                    Arc::new(Accepted {
                        revision,
                        fleet,
                        has_baseline: false,
                        former_names: Vec::new(),
                    }),
                );
            }
            Err(e) => {
                tracing::error!(%revision, error = %e, "cannot read back a revision clusters are given; they are not reconciled until the rollout moves on");
                broken.insert(revision, e);
            }
        }
    }
    (fleets, broken)
}

/// Every rollback the state records, as (revision, wave, when).
fn rollbacks_in(state: &State) -> BTreeSet<(String, String, u64)> {
    state
        .rollout
        .iter()
        .flat_map(|r| {
            r.waves.iter().filter_map(|w| {
                let done = w.rolled_back.as_ref()?;
                Some((r.revision.clone(), w.name.clone(), done.at_ms))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::testing::{claim, cluster, fleet, wave, FleetFiles};

    fn accepted(revision: &str) -> Arc<Accepted> {
        let files = FleetFiles::new()
            .with(
                &fleet("main")
                    .wave(wave("dev", &[("env", "dev")]))
                    .wave(wave("prod", &[("env", "prod")])),
            )
            .with(&cluster("d1").label("env", "dev"))
            .with(&cluster("p1").label("env", "prod"))
            .with(&claim("a", "d1"))
            .with(&claim("b", "p1"));
        Arc::new(Accepted {
            revision: revision.into(),
            fleet: load(&files.tree()).fleet.expect("the fleet loads"),
            has_baseline: false,
            former_names: Vec::new(),
        })
    }

    /// A driver keeping nothing, publishing to `status`.
    fn in_memory(status: &Arc<RwLock<StatusReport>>) -> RolloutDriver {
        RolloutDriver::open(
            None,
            Loaded::default(),
            Arc::new(Metrics::new().unwrap()),
            status.clone(),
            Vec::new(),
        )
    }

    fn wave_and_pending(
        status: &RwLock<StatusReport>,
        name: &str,
    ) -> (Option<String>, Option<String>) {
        let s = status.read().unwrap();
        let c = &s.clusters[name];
        (c.wave.clone(), c.pending_revision.clone())
    }

    /// A cluster is added to the status report by its worker, with no wave: the next tick
    /// fills in its wave, and the revision it waits for while an earlier wave rolls out.
    #[test]
    fn a_cluster_new_to_the_status_gets_its_wave_and_pending_revision_at_the_next_tick() {
        let status: Arc<RwLock<StatusReport>> = Arc::default();
        let driver = in_memory(&status);
        driver.accept(&accepted("r1"), &FileTree::default());
        for name in ["d1", "p1"] {
            status
                .write()
                .unwrap()
                .clusters
                .insert(name.into(), ClusterStatus::default().into());
            driver.joined().push(name);
        }
        assert_eq!(wave_and_pending(&status, "p1"), (None, None));
        driver.tick();
        assert_eq!(wave_and_pending(&status, "d1"), (Some("dev".into()), None));
        assert_eq!(
            wave_and_pending(&status, "p1"),
            (Some("prod".into()), Some("r1".into())),
            "prod waits for dev"
        );
    }

    /// A replica that follows under --shards never ticks: publishing every cluster's wave
    /// forgets the clusters that joined, so that their names do not pile up.
    #[test]
    fn publishing_every_cluster_forgets_those_that_joined() {
        let status: Arc<RwLock<StatusReport>> = Arc::default();
        let driver = in_memory(&status);
        status
            .write()
            .unwrap()
            .clusters
            .insert("d1".into(), ClusterStatus::default().into());
        driver.joined().push("d1");
        driver.follow(Loaded::default());
        assert!(driver.joined.take().is_empty());
        driver.joined().push("d1");
        driver.accept(&accepted("r1"), &FileTree::default());
        assert!(driver.joined.take().is_empty());
        assert_eq!(wave_and_pending(&status, "d1"), (Some("dev".into()), None));
    }

    /// Taking the rollout up forgets every report, so every worker's assignment must move
    /// (a resume: the end-to-end test
    /// `a_resumed_rollout_is_judged_on_reports_made_at_once_whatever_the_resync`).
    #[test]
    fn taking_the_rollout_up_asks_every_worker_for_its_report_again() {
        let driver = RolloutDriver::open(
            None,
            Loaded::default(),
            Arc::new(Metrics::new().unwrap()),
            Arc::default(),
            Vec::new(),
        );
        let before = driver.asked();
        let woken = driver.subscribe();
        driver.adopt(Loaded::default());
        assert_eq!(driver.asked(), before + 1);
        assert!(
            woken.has_changed().unwrap(),
            "the workers are sent their assignments"
        );
    }
}
