//! Rollout waves (SPEC 2.3), pure: which revision each cluster is given, and when a wave
//! starts, bakes, completes or fails. A revision that changes a cluster's desired objects
//! reaches it only when its wave starts; a wave starts once the one before it is complete
//! (every changed cluster ready at the new revision for the wave's `bakeTime`); a wave that
//! is not ready within its `timeout`, or whose applies fail, halts the rollout. The agent
//! (`psql_fleet::agent`) feeds in health and the clock, carries out the assignments and
//! persists [`State`], so a restart skips no gate and re-rolls nothing.

pub mod batches;
pub mod gates;
pub mod rollback;
pub mod store;
pub mod windows;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fleetdir::LoadedFleet;
use crate::model::fleet::Rollback;
use crate::model::gate::Gate;
use crate::model::share::Share;
use crate::model::window::Window;
use crate::reconcile::diff::desired_hash;
use crate::render::{render_cluster, Observed};

pub use crate::model::fleet::IMPLICIT_WAVE;

/// A wave's state, the `state` label of `psql_fleet_rollout_wave`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaveState {
    Pending,
    /// Would start, but waits for a person's approval.
    AwaitingApproval,
    /// Would start, but no rollout window lets it now.
    WaitingForWindow,
    Progressing,
    Baking,
    Complete,
    Failed,
    Halted,
}

impl WaveState {
    pub const ALL: [WaveState; 8] = [
        WaveState::Pending,
        WaveState::AwaitingApproval,
        WaveState::WaitingForWindow,
        WaveState::Progressing,
        WaveState::Baking,
        WaveState::Complete,
        WaveState::Failed,
        WaveState::Halted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Pending => "pending",
            WaveState::AwaitingApproval => "awaiting_approval",
            WaveState::WaitingForWindow => "waiting_for_window",
            WaveState::Progressing => "progressing",
            WaveState::Baking => "baking",
            WaveState::Complete => "complete",
            WaveState::Failed => "failed",
            WaveState::Halted => "halted",
        }
    }
}

/// One wave of a revision: its clusters, in the order its batches take them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WaveDef {
    pub name: String,
    pub bake_time: Duration,
    pub timeout: Duration,
    pub clusters: Vec<String>,
    /// Batches of at most this many changed clusters; `None`: all at once.
    pub max_unavailable: Option<Share>,
    /// How long a batch but the last stays ready before the next starts.
    pub batch_bake_time: Duration,
    /// How many changed clusters may be left behind unreachable.
    pub max_unreachable: Option<Share>,
    /// The wave starts only once approved.
    pub require_approval: bool,
    /// Metric checks that must pass while it bakes.
    pub gates: Vec<Gate>,
    /// When it may start: the fleet's windows and its own.
    pub windows: Vec<Window>,
    /// Whether a failure gives its clusters back what they ran before.
    pub rollback: Rollback,
}

/// What a revision asks of the fleet: its waves and, per cluster, a fingerprint of its
/// desired objects (equal fingerprints, same objects).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub revision: String,
    pub waves: Vec<WaveDef>,
    pub fingerprints: BTreeMap<String, String>,
}

impl Target {
    /// The waves of `fleet` (configured ones in order, then the implicit one when some
    /// cluster matches none) and the fingerprint of every cluster.
    pub fn of(revision: &str, fleet: &LoadedFleet) -> Target {
        let settings = &fleet.settings;
        let mut waves: Vec<WaveDef> = settings
            .waves
            .iter()
            .map(|w| WaveDef {
                name: w.name.clone(),
                bake_time: w.bake_time,
                timeout: w.timeout,
                clusters: Vec::new(),
                max_unavailable: w.max_unavailable,
                batch_bake_time: w.batch_bake_time,
                max_unreachable: w.max_unreachable,
                require_approval: w.require_approval,
                gates: w.gates.clone(),
                windows: settings.windows.iter().chain(&w.windows).cloned().collect(),
                rollback: w.rollback,
            })
            .collect();
        let mut implicit = WaveDef {
            name: IMPLICIT_WAVE.to_string(),
            timeout: crate::model::fleet::DEFAULT_WAVE_TIMEOUT,
            windows: settings.windows.clone(),
            ..WaveDef::default()
        };
        let mut fingerprints = BTreeMap::new();
        for (name, cluster) in &fleet.clusters {
            let wave = settings
                .waves
                .iter()
                .position(|w| w.selector.matches(&cluster.labels));
            match wave {
                Some(i) => waves[i].clusters.push(name.clone()),
                None => implicit.clusters.push(name.clone()),
            }
            fingerprints.insert(name.clone(), fingerprint(fleet, name));
        }
        for (def, settings) in waves.iter_mut().zip(&settings.waves) {
            if let Some(label) = &settings.spread_by {
                def.clusters = batches::spread(&def.clusters, |c| {
                    fleet
                        .clusters
                        .get(c)
                        .and_then(|c| c.labels.get(label))
                        .map(String::as_str)
                });
            }
        }
        if !implicit.clusters.is_empty() {
            waves.push(implicit);
        }
        Target {
            revision: revision.to_string(),
            waves,
            fingerprints,
        }
    }
}

/// A digest of every object the fleet renders for `cluster`, Usages included, so that two
/// revisions that give a cluster the same objects have the same fingerprint.
pub fn fingerprint(fleet: &LoadedFleet, cluster: &str) -> String {
    let mut hasher = Sha256::new();
    if let Some(c) = fleet.clusters.get(cluster) {
        for object in render_cluster(&fleet.settings, c, fleet.claims_of(cluster), |_| {
            Observed::BOTH_READY
        }) {
            hasher.update(object.object_ref().to_string().as_bytes());
            hasher.update(desired_hash(&object).as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// What a cluster was last given: the revision it is reconciled to and its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Given {
    pub revision: String,
    pub fingerprint: String,
}

/// How a cluster's last pass at some revision went, as the agent reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub revision: String,
    /// Every claim ready, with a readiness the controller reported for the current spec.
    pub ready: bool,
    /// Why not ready, naming the claims.
    pub reason: Option<String>,
    /// Applies or deletions that failed in the pass.
    pub errors: Option<String>,
}

/// Where one wave of a rollout stands; times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    pub name: String,
    pub state: WaveState,
    pub bake_ms: u64,
    pub timeout_ms: u64,
    /// The wave's clusters whose desired objects change, with their new fingerprint; the
    /// others got the revision at once.
    pub clusters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Since when the wave waits for readiness; its timeout counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressing_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why the wave failed or waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The changed clusters cut into batches when the rollout began (empty: one batch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Vec<String>>,
    /// The batch in progress, from 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub batch: usize,
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub batch_bake_ms: u64,
    /// How many changed clusters may be left behind unreachable.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_unreachable: usize,
    /// Clusters the wave completed without, unreachable then; each leaves the list once
    /// ready at the revision for the wave's bake time (since when, once ready).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stragglers: BTreeMap<String, Option<u64>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_approval: bool,
    /// Who approved the wave for this revision, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<Approval>,
    /// Metric checks that must pass while it bakes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// When it may start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// While it waits for a window: when one next lets it start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_ms: Option<u64>,
    /// Whether a failure rolls its clusters back.
    #[serde(default, skip_serializing_if = "is_no_rollback")]
    pub rollback: Rollback,
    /// What each cluster the wave gave the revision was given before (`None`: nothing,
    /// the cluster is new to the fleet), kept so that a rollback can give it back and its
    /// revision's files stay kept until then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub previous: BTreeMap<String, Option<Given>>,
    /// The wave's clusters were given back their previous revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<rollback::RolledBack>,
}

fn is_no_rollback(r: &Rollback) -> bool {
    *r == Rollback::None
}

/// A person's go for a wave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub by: String,
    pub at_ms: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_ms(n: &u64) -> bool {
    *n == 0
}

impl WaveProgress {
    /// The clusters of batch `b` (all changed clusters when the wave has no batches).
    fn batch_members(&self, b: usize) -> Vec<&String> {
        if self.batches.is_empty() {
            return self.clusters.keys().collect();
        }
        self.batches
            .get(b)
            .map(|m| m.iter().collect())
            .unwrap_or_default()
    }

    /// The clusters given the revision so far: every batch up to the current one.
    fn given_so_far(&self) -> Vec<&String> {
        if self.batches.is_empty() {
            return self.clusters.keys().collect();
        }
        self.batches.iter().take(self.batch + 1).flatten().collect()
    }

    fn last_batch(&self) -> bool {
        self.batch + 1 >= self.batches.len()
    }
}

/// Why a rollout stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Halt {
    pub wave: String,
    pub reason: String,
    /// Halted with `psql-fleet rollout halt`, not by a failure.
    pub by_operator: bool,
    pub at_ms: u64,
}

/// The rollout of one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub revision: String,
    pub started_ms: u64,
    pub waves: Vec<WaveProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
}

impl Rollout {
    /// The first wave that is not complete; `None` once the rollout is done.
    pub fn current(&self) -> Option<&WaveProgress> {
        self.waves.iter().find(|w| w.state != WaveState::Complete)
    }

    pub fn complete(&self) -> bool {
        self.current().is_none()
    }
}

/// A wave changing state: what logs, metrics and commit statuses report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub revision: String,
    pub wave: String,
    pub state: WaveState,
    pub description: String,
}

/// Why an operator's halt or resume was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no rollout to {verb}: no revision served yet")]
    NoRollout { verb: &'static str },
    #[error("already halted at wave {wave}: {reason}")]
    AlreadyHalted { wave: String, reason: String },
    #[error("nothing to halt: the rollout of revision {revision} is complete")]
    Complete { revision: String },
    #[error("the rollout of revision {revision} is not halted")]
    NotHalted { revision: String },
    #[error("reason refused: {0}")]
    BadReason(#[from] crate::text::TextError),
    #[error("no wave {wave} in the rollout of revision {revision}")]
    UnknownWave { wave: String, revision: String },
    #[error("wave {wave} needs no approval")]
    NoApprovalNeeded { wave: String },
    #[error("wave {wave} is already approved, by {by}")]
    AlreadyApproved { wave: String, by: String },
    #[error("wave {wave} has started already ({state})")]
    Started { wave: String, state: &'static str },
    #[error("{}", nothing_to_undo(wave.as_deref(), revision))]
    NothingToUndo {
        wave: Option<String>,
        revision: String,
    },
}

fn nothing_to_undo(wave: Option<&str>, revision: &str) -> String {
    match wave {
        Some(w) => format!("wave {w} has given its clusters nothing to undo in the rollout of revision {revision} (not started yet, or rolled back already)"),
        None => format!("no wave of the rollout of revision {revision} has given its clusters anything to undo"),
    }
}

/// Longest halt reason, in characters: a sentence or two, and room in a GitHub commit
/// status description (140 characters) for most of it after the wave's state.
pub const MAX_REASON_CHARS: usize = 200;

/// Everything the agent persists: per cluster what it was given, and the rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub clusters: BTreeMap<String, Given>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in milliseconds the way fleet.yaml writes it (`90s`, `5m`, `1h`).
pub fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

impl State {
    /// The revision `cluster` is to be reconciled to; `None` while the cluster waits for
    /// its first wave (nothing is written to it then).
    pub fn given(&self, cluster: &str) -> Option<&str> {
        self.clusters.get(cluster).map(|g| g.revision.as_str())
    }

    /// Whether [`advance`](State::advance) may move the rollout on with the clock alone: a
    /// rollout neither complete nor halted (a wave to start, bake or time out), or one with
    /// stragglers still to catch up (each bakes on the clock). A complete or halted one
    /// without stragglers stays as it is, whatever the health and the time, until a new
    /// revision, a halt or a resume.
    pub fn moves_with_clock(&self) -> bool {
        self.rollout.as_ref().is_some_and(|r| {
            (r.halted.is_none() && !r.complete())
                || r.waves.iter().any(|w| !w.stragglers.is_empty())
        })
    }

    /// Every revision some cluster is given, the rollout is about, or a rollback of it
    /// would give back.
    pub fn revisions(&self) -> BTreeSet<String> {
        let previous = self
            .rollout
            .iter()
            .flat_map(|r| &r.waves)
            .flat_map(|w| w.previous.values().flatten())
            .map(|g| g.revision.clone());
        self.clusters
            .values()
            .map(|g| g.revision.clone())
            .chain(self.rollout.iter().map(|r| r.revision.clone()))
            .chain(previous)
            .collect()
    }

    /// A revision was accepted. The same revision as the rollout's changes nothing (an
    /// agent restart); a new one supersedes the rollout from the first wave. Clusters whose
    /// objects do not change get it at once; the changed ones wait for their wave. An
    /// operator's halt carries over to the new rollout; a failure does not.
    pub fn begin(&mut self, target: &Target, now: u64) -> Vec<Transition> {
        if self
            .rollout
            .as_ref()
            .is_some_and(|r| r.revision == target.revision)
        {
            return Vec::new();
        }
        let mut out = Vec::new();
        let old = self.rollout.take();
        let mut carried_halt = None;
        if let Some(old) = old {
            for w in old.waves.iter().filter(|w| w.state != WaveState::Complete) {
                out.push(Transition {
                    revision: old.revision.clone(),
                    wave: w.name.clone(),
                    state: WaveState::Halted,
                    description: format!("superseded by revision {}", short(&target.revision)),
                });
            }
            carried_halt = old.halted.filter(|h| h.by_operator);
        }
        self.clusters
            .retain(|name, _| target.fingerprints.contains_key(name));
        let mut waves = Vec::new();
        for def in &target.waves {
            let mut changed = BTreeMap::new();
            let mut in_order = Vec::new();
            for cluster in &def.clusters {
                let Some(fp) = target.fingerprints.get(cluster) else {
                    continue;
                };
                match self.clusters.get_mut(cluster) {
                    Some(given) if given.fingerprint == *fp => {
                        given.revision = target.revision.clone();
                    }
                    _ => {
                        changed.insert(cluster.clone(), fp.clone());
                        in_order.push(cluster.clone());
                    }
                }
            }
            let max_unreachable = def.max_unreachable.map_or(0, |s| s.of(changed.len()));
            waves.push(WaveProgress {
                name: def.name.clone(),
                state: WaveState::Pending,
                bake_ms: ms(def.bake_time),
                timeout_ms: ms(def.timeout),
                clusters: changed,
                started_ms: None,
                progressing_since_ms: None,
                ready_since_ms: None,
                finished_ms: None,
                reason: None,
                batches: batches::cut(&in_order, def.max_unavailable),
                batch: 0,
                batch_bake_ms: ms(def.batch_bake_time),
                max_unreachable,
                stragglers: BTreeMap::new(),
                require_approval: def.require_approval,
                approved: None,
                gates: def.gates.clone(),
                windows: def.windows.clone(),
                next_window_ms: None,
                rollback: def.rollback,
                previous: BTreeMap::new(),
                rolled_back: None,
            });
        }
        let mut rollout = Rollout {
            revision: target.revision.clone(),
            started_ms: now,
            waves,
            halted: None,
        };
        if let Some(h) = carried_halt {
            if let Some(first) = rollout.current().map(|w| w.name.clone()) {
                rollout.halted = Some(Halt {
                    wave: first,
                    at_ms: now,
                    ..h
                });
                for w in &mut rollout.waves {
                    if w.state != WaveState::Complete {
                        w.state = WaveState::Halted;
                    }
                }
            }
        }
        for w in &rollout.waves {
            out.push(Transition {
                revision: rollout.revision.clone(),
                wave: w.name.clone(),
                state: w.state,
                description: match w.state {
                    WaveState::Halted => "halted by an operator".to_string(),
                    _ => format!("{} clusters to update", w.clusters.len()),
                },
            });
        }
        self.rollout = Some(rollout);
        out.extend(self.advance(&BTreeMap::new(), now));
        out
    }

    /// Moves the rollout on with the clusters' latest health: starts the next wave once
    /// the current one is complete, and fails it on apply errors or when its timeout
    /// passes before every changed cluster is ready at the rollout's revision.
    pub fn advance(&mut self, health: &BTreeMap<String, Health>, now: u64) -> Vec<Transition> {
        self.advance_seeing(health, &BTreeSet::new(), now)
    }

    /// [`State::advance`], knowing which clusters cannot be reached now: up to a wave's
    /// `maxUnreachable` of them are left behind as stragglers rather than holding it.
    pub fn advance_seeing(
        &mut self,
        health: &BTreeMap<String, Health>,
        unreachable: &BTreeSet<String>,
        now: u64,
    ) -> Vec<Transition> {
        self.advance_judging(health, unreachable, &gates::Readings::new(), now)
    }

    /// [`State::advance_seeing`], with the latest answers to the waves' metric gates: a
    /// baking wave completes only once its bake time is over and each of its gates has
    /// passed since it became ready; one gate out of its range fails it.
    pub fn advance_judging(
        &mut self,
        health: &BTreeMap<String, Health>,
        unreachable: &BTreeSet<String>,
        readings: &gates::Readings,
        now: u64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let State { clusters, rollout } = self;
        let Some(r) = rollout.as_mut() else {
            return out;
        };
        let revision = r.revision.clone();
        let note = |out: &mut Vec<Transition>, w: &WaveProgress, description: String| {
            out.push(Transition {
                revision: revision.clone(),
                wave: w.name.clone(),
                state: w.state,
                description,
            });
        };
        catch_up(r, health, unreachable, now, &mut out);
        if r.halted.is_some() {
            return out;
        }
        let give = |clusters: &mut BTreeMap<String, Given>, w: &mut WaveProgress, b: usize| {
            let members: Vec<String> = w.batch_members(b).into_iter().cloned().collect();
            for cluster in members {
                if let Some(fp) = w.clusters.get(&cluster) {
                    let given = Given {
                        revision: revision.clone(),
                        fingerprint: fp.clone(),
                    };
                    let before = clusters.insert(cluster.clone(), given);
                    // A wave started over (after a resume) gives again what it gave: the
                    // first giving's `before` is the one a rollback gives back.
                    w.previous.entry(cluster).or_insert(before);
                }
            }
        };
        while let Some(i) = r.waves.iter().position(|w| w.state != WaveState::Complete) {
            let w = &mut r.waves[i];
            match w.state {
                WaveState::Pending | WaveState::AwaitingApproval
                    if w.require_approval && w.approved.is_none() && !w.clusters.is_empty() =>
                {
                    if w.state == WaveState::Pending {
                        w.state = WaveState::AwaitingApproval;
                        w.reason = Some(format!(
                            "waiting for approval: psql-fleet rollout approve {}",
                            w.name
                        ));
                        note(&mut out, w, "waiting for approval".into());
                    }
                    break;
                }
                WaveState::Pending | WaveState::AwaitingApproval | WaveState::WaitingForWindow => {
                    if !w.clusters.is_empty() {
                        if let windows::WindowVerdict::Closed { next_ms, why } =
                            windows::judge(&w.windows, now)
                        {
                            let reason = match next_ms {
                                Some(t) => format!(
                                    "waiting for a window: {why}; may start at {}",
                                    windows::rfc3339(t)
                                ),
                                None => {
                                    format!("waiting for a window: {why}; none opens within a year")
                                }
                            };
                            w.next_window_ms = next_ms;
                            let entering = w.state != WaveState::WaitingForWindow;
                            w.state = WaveState::WaitingForWindow;
                            w.reason = Some(reason.clone());
                            if entering {
                                note(&mut out, w, reason);
                            }
                            break;
                        }
                    }
                    w.next_window_ms = None;
                    w.state = WaveState::Progressing;
                    w.started_ms = Some(now);
                    w.progressing_since_ms = Some(now);
                    w.reason = None;
                    w.batch = 0;
                    w.stragglers.clear();
                    w.rolled_back = None;
                    give(clusters, w, 0);
                    if w.clusters.is_empty() {
                        w.state = WaveState::Complete;
                        w.finished_ms = Some(now);
                        note(&mut out, w, "no cluster of this wave changes".into());
                        continue;
                    }
                    let description = applying(w);
                    note(&mut out, w, description);
                    // The new revision has only just been given: no health to judge yet.
                    break;
                }
                WaveState::Progressing | WaveState::Baking => {
                    let verdict = judge(w, &revision, health, unreachable);
                    match verdict {
                        Verdict::Errors(reason) => {
                            fail(r, i, reason, now, &mut out);
                            break;
                        }
                        Verdict::Ready(left_behind) => {
                            let since = *w.ready_since_ms.get_or_insert(now);
                            if !w.last_batch() {
                                // A batch ready: the next starts once it has baked.
                                if now.saturating_sub(since) < w.batch_bake_ms {
                                    w.reason = Some(format!(
                                        "batch {} of {} ready; baking for {}",
                                        w.batch + 1,
                                        w.batches.len(),
                                        human(w.batch_bake_ms)
                                    ));
                                    break;
                                }
                                w.batch += 1;
                                w.ready_since_ms = None;
                                w.progressing_since_ms = Some(now);
                                w.reason = None;
                                let b = w.batch;
                                give(clusters, w, b);
                                let description = applying(w);
                                note(&mut out, w, description);
                                break;
                            }
                            if w.state == WaveState::Progressing {
                                w.state = WaveState::Baking;
                                w.reason = None;
                                let description =
                                    format!("every claim ready; baking for {}", human(w.bake_ms));
                                note(&mut out, w, description);
                            }
                            let verdict = gates::judge_gates(w, &revision, readings, since);
                            if let gates::GateVerdict::Fail(reason) = verdict {
                                fail(r, i, reason, now, &mut out);
                                break;
                            }
                            let baked = since.saturating_add(w.bake_ms);
                            if now < baked {
                                // Say what the gates wait for while there is time left.
                                w.reason = match &verdict {
                                    gates::GateVerdict::Waiting(why) => {
                                        Some(format!("baking; gates so far: {why}"))
                                    }
                                    _ => None,
                                };
                                break;
                            }
                            if let gates::GateVerdict::Waiting(reason) = verdict {
                                match gates::overdue(w, &reason, now - baked) {
                                    Some(reason) => fail(r, i, reason, now, &mut out),
                                    None => {
                                        w.reason =
                                            Some(format!("baked; waiting for gates: {reason}"))
                                    }
                                }
                                break;
                            }
                            w.state = WaveState::Complete;
                            w.finished_ms = Some(now);
                            w.reason = None;
                            let mut description =
                                format!("ready and baked for {}", human(w.bake_ms));
                            if !w.gates.is_empty() {
                                let names: Vec<&str> =
                                    w.gates.iter().map(|g| g.name.as_str()).collect();
                                description
                                    .push_str(&format!("; gates passed: {}", names.join(", ")));
                            }
                            if !left_behind.is_empty() {
                                description.push_str(&format!(
                                    "; left behind unreachable, to catch up: {}",
                                    left_behind.join(", ")
                                ));
                            }
                            w.stragglers = left_behind.into_iter().map(|c| (c, None)).collect();
                            note(&mut out, w, description);
                        }
                        Verdict::NotReady(reason) => {
                            w.ready_since_ms = None;
                            if w.state == WaveState::Baking {
                                w.state = WaveState::Progressing;
                                w.progressing_since_ms = Some(now);
                                note(&mut out, w, format!("not ready while baking: {reason}"));
                            }
                            w.reason = Some(reason.clone());
                            let since = w.progressing_since_ms.or(w.started_ms).unwrap_or(now);
                            if now.saturating_sub(since) >= w.timeout_ms {
                                let reason = format!(
                                    "not ready within the wave's timeout of {}: {reason}",
                                    human(w.timeout_ms)
                                );
                                fail(r, i, reason, now, &mut out);
                            }
                            break;
                        }
                    }
                }
                WaveState::Failed | WaveState::Halted | WaveState::Complete => break,
            }
        }
        if r.halted.is_some() {
            rollback::after_failure(clusters, r, now, &mut out);
        }
        out
    }

    /// The agent started again with this state: the wave in progress is judged afresh
    /// (the health seen before the restart is gone), with a fresh timeout and a full bake,
    /// so the restart neither skips its gate nor fails it for want of reports.
    pub fn restarted(&mut self, now: u64) -> Vec<Transition> {
        let Some(r) = self.rollout.as_mut() else {
            return Vec::new();
        };
        if r.halted.is_some() {
            return Vec::new();
        }
        let revision = r.revision.clone();
        let Some(w) = r.waves.iter_mut().find(|w| w.state != WaveState::Complete) else {
            return Vec::new();
        };
        if !matches!(w.state, WaveState::Progressing | WaveState::Baking) {
            return Vec::new();
        }
        w.state = WaveState::Progressing;
        w.progressing_since_ms = Some(now);
        w.ready_since_ms = None;
        vec![Transition {
            revision,
            wave: w.name.clone(),
            state: WaveState::Progressing,
            description: "agent restarted: readiness is judged again".into(),
        }]
    }

    /// `psql-fleet rollout halt`: no further wave starts until resumed; clusters already
    /// given the revision keep it.
    /// The reason is an operator's text: at most [`MAX_REASON_CHARS`] of plain text on one
    /// line, else refused, since it reaches the status, the logs and commit statuses.
    pub fn halt(&mut self, reason: &str, now: u64) -> Result<Vec<Transition>, ControlError> {
        let reason = crate::text::check(reason, MAX_REASON_CHARS)?;
        let r = self
            .rollout
            .as_mut()
            .ok_or(ControlError::NoRollout { verb: "halt" })?;
        if let Some(h) = &r.halted {
            return Err(ControlError::AlreadyHalted {
                wave: h.wave.clone(),
                reason: h.reason.clone(),
            });
        }
        let Some(wave) = r.current().map(|w| w.name.clone()) else {
            return Err(ControlError::Complete {
                revision: short(&r.revision).to_string(),
            });
        };
        let reason = if reason.is_empty() {
            "halted by an operator".to_string()
        } else {
            format!("halted by an operator: {reason}")
        };
        r.halted = Some(Halt {
            wave,
            reason: reason.clone(),
            by_operator: true,
            at_ms: now,
        });
        let mut out = Vec::new();
        for w in r
            .waves
            .iter_mut()
            .filter(|w| w.state != WaveState::Complete)
        {
            w.state = WaveState::Halted;
            w.ready_since_ms = None;
            w.next_window_ms = None;
            out.push(Transition {
                revision: r.revision.clone(),
                wave: w.name.clone(),
                state: WaveState::Halted,
                description: reason.clone(),
            });
        }
        Ok(out)
    }

    /// `psql-fleet rollout approve <wave>`: the wave may start (now, if it is the one
    /// waiting; else when its turn comes), for the revision being rolled out only.
    pub fn approve(
        &mut self,
        wave: &str,
        by: &str,
        now: u64,
    ) -> Result<Vec<Transition>, ControlError> {
        let r = self
            .rollout
            .as_mut()
            .ok_or(ControlError::NoRollout { verb: "approve" })?;
        let revision = r.revision.clone();
        let w = r.waves.iter_mut().find(|w| w.name == wave).ok_or_else(|| {
            ControlError::UnknownWave {
                wave: wave.to_string(),
                revision: short(&revision).to_string(),
            }
        })?;
        if !w.require_approval {
            return Err(ControlError::NoApprovalNeeded {
                wave: wave.to_string(),
            });
        }
        if let Some(a) = &w.approved {
            return Err(ControlError::AlreadyApproved {
                wave: wave.to_string(),
                by: a.by.clone(),
            });
        }
        if !matches!(
            w.state,
            WaveState::Pending | WaveState::AwaitingApproval | WaveState::Halted
        ) {
            return Err(ControlError::Started {
                wave: wave.to_string(),
                state: w.state.as_str(),
            });
        }
        w.approved = Some(Approval {
            by: by.to_string(),
            at_ms: now,
        });
        if w.state == WaveState::AwaitingApproval {
            w.state = WaveState::Pending;
            w.reason = None;
        }
        let mut out = vec![Transition {
            revision,
            wave: w.name.clone(),
            state: w.state,
            description: format!("approved by {by}"),
        }];
        out.extend(self.advance(&BTreeMap::new(), now));
        Ok(out)
    }

    /// `psql-fleet rollout resume`: the halted or failed wave starts over (a fresh timeout
    /// and a full bake), the later ones wait for it again.
    pub fn resume(&mut self, now: u64) -> Result<Vec<Transition>, ControlError> {
        let r = self
            .rollout
            .as_mut()
            .ok_or(ControlError::NoRollout { verb: "resume" })?;
        if r.halted.take().is_none() {
            return Err(ControlError::NotHalted {
                revision: short(&r.revision).to_string(),
            });
        }
        let mut out = Vec::new();
        for w in r
            .waves
            .iter_mut()
            .filter(|w| w.state != WaveState::Complete)
        {
            w.state = WaveState::Pending;
            w.started_ms = None;
            w.progressing_since_ms = None;
            w.ready_since_ms = None;
            w.reason = None;
            w.batch = 0;
            out.push(Transition {
                revision: r.revision.clone(),
                wave: w.name.clone(),
                state: WaveState::Pending,
                description: "resumed by an operator".into(),
            });
        }
        out.extend(self.advance(&BTreeMap::new(), now));
        Ok(out)
    }
}

enum Verdict {
    /// Ready, but for these unreachable clusters, within the wave's `maxUnreachable`.
    Ready(Vec<String>),
    NotReady(String),
    Errors(String),
}

/// "applying to a, b" (with the batch when the wave has several). Like a "not ready"
/// reason, it names [`NAMED_CLUSTERS`] clusters and counts the rest: it is logged and sent
/// as a commit status, and a wave of 10,000 clusters made it a log line of 100 kB.
fn applying(w: &WaveProgress) -> String {
    let members = w.batch_members(w.batch);
    let mut names = members
        .iter()
        .take(NAMED_CLUSTERS)
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let more = members.len().saturating_sub(NAMED_CLUSTERS);
    if more > 0 {
        names.push_str(&format!(" and {more} more {}", cluster_noun(more)));
    }
    if w.batches.len() > 1 {
        format!(
            "batch {} of {}: applying to {names}",
            w.batch + 1,
            w.batches.len(),
        )
    } else {
        format!("applying to {names}")
    }
}

fn cluster_noun(n: usize) -> &'static str {
    if n == 1 {
        "cluster"
    } else {
        "clusters"
    }
}

/// The clusters given the revision so far, judged at `revision`: apply errors first, then
/// the first cluster not ready (or not yet reported), else ready. Unreachable clusters not
/// ready at the revision are left behind while there are no more of them than the wave's
/// `maxUnreachable`.
fn judge(
    w: &WaveProgress,
    revision: &str,
    health: &BTreeMap<String, Health>,
    unreachable: &BTreeSet<String>,
) -> Verdict {
    let mut not_ready = NotReady::default();
    let mut away = Vec::new();
    for (cluster, h) in health_of(w.given_so_far(), health) {
        let h = h.filter(|h| h.revision == revision);
        if unreachable.contains(cluster) && !h.is_some_and(|h| h.ready) {
            away.push(cluster.clone());
            continue;
        }
        match h {
            Some(h) if h.errors.is_some() => {
                let errors = h.errors.as_deref().unwrap_or_default();
                return Verdict::Errors(if errors.starts_with(&format!("cluster {cluster}:")) {
                    errors.to_string()
                } else {
                    format!("cluster {cluster}: {errors}")
                });
            }
            Some(h) if h.ready => {}
            Some(h) => not_ready.push(|| {
                format!(
                    "cluster {cluster}: {}",
                    h.reason.as_deref().unwrap_or("not ready")
                )
            }),
            None => not_ready
                .push(|| format!("cluster {cluster}: no reconcile pass at this revision yet")),
        }
    }
    if away.len() > w.max_unreachable {
        for c in away.drain(..) {
            not_ready.push(|| format!("cluster {c}: unreachable"));
        }
    }
    match not_ready.reason() {
        None => Verdict::Ready(away),
        Some(reason) => Verdict::NotReady(reason),
    }
}

/// Each of `given` with its health. A wave without batches gives its clusters in name
/// order, the order `health` is kept in: the two are then walked side by side, one name
/// compared a step, where a lookup each compared about fourteen at ten thousand clusters
/// (judged on every tick while reports arrive, that was most of the tick's CPU).
fn health_of<'a>(
    given: Vec<&'a String>,
    health: &'a BTreeMap<String, Health>,
) -> impl Iterator<Item = (&'a String, Option<&'a Health>)> {
    let in_order = given.windows(2).all(|pair| pair[0] < pair[1]);
    let mut walk = health.iter().peekable();
    given.into_iter().map(move |cluster| {
        if !in_order {
            return (cluster, health.get(cluster));
        }
        while walk.next_if(|(name, _)| *name < cluster).is_some() {}
        let h = walk.next_if(|(name, _)| *name == cluster).map(|(_, h)| h);
        (cluster, h)
    })
}

/// How many clusters a "not ready" reason or a wave's "applying to" names; the others are
/// counted. The reason goes into the status, the saved rollout state and Events, and is
/// rebuilt on every tick while a wave waits: at thousands of clusters, naming each made it
/// hundreds of KiB.
const NAMED_CLUSTERS: usize = 10;

/// The clusters of a wave not ready yet: the first [`NAMED_CLUSTERS`] with why, then a
/// count.
#[derive(Default)]
struct NotReady {
    named: Vec<String>,
    more: usize,
}

impl NotReady {
    fn push(&mut self, why: impl FnOnce() -> String) {
        if self.named.len() < NAMED_CLUSTERS {
            self.named.push(why());
        } else {
            self.more += 1;
        }
    }

    fn reason(self) -> Option<String> {
        if self.named.is_empty() {
            return None;
        }
        let mut reason = self.named.join("; ");
        if self.more > 0 {
            let more = self.more;
            reason.push_str(&format!(
                "; and {more} more {} not ready",
                cluster_noun(more)
            ));
        }
        Some(reason)
    }
}

/// Stragglers of the waves already complete catch up: each leaves the list once ready at
/// the revision (it was given it with its batch) for its wave's bake time, holding no
/// other wave meanwhile.
fn catch_up(
    r: &mut Rollout,
    health: &BTreeMap<String, Health>,
    unreachable: &BTreeSet<String>,
    now: u64,
    out: &mut Vec<Transition>,
) {
    for w in r
        .waves
        .iter_mut()
        .filter(|w| w.state == WaveState::Complete)
    {
        let mut caught_up = Vec::new();
        for (cluster, since) in &mut w.stragglers {
            let ready = !unreachable.contains(cluster)
                && health
                    .get(cluster)
                    .is_some_and(|h| h.revision == r.revision && h.ready && h.errors.is_none());
            if !ready {
                *since = None;
                continue;
            }
            let since = *since.get_or_insert(now);
            if now.saturating_sub(since) >= w.bake_ms {
                caught_up.push(cluster.clone());
            }
        }
        for cluster in caught_up {
            w.stragglers.remove(&cluster);
            out.push(Transition {
                revision: r.revision.clone(),
                wave: w.name.clone(),
                state: w.state,
                description: format!(
                    "straggler {cluster} caught up: ready and baked for {}",
                    human(w.bake_ms)
                ),
            });
        }
    }
}

fn fail(r: &mut Rollout, i: usize, reason: String, now: u64, out: &mut Vec<Transition>) {
    let failed = r.waves[i].name.clone();
    r.halted = Some(Halt {
        wave: failed.clone(),
        reason: reason.clone(),
        by_operator: false,
        at_ms: now,
    });
    for (j, w) in r.waves.iter_mut().enumerate().skip(i) {
        let (state, description) = if j == i {
            w.finished_ms = Some(now);
            (WaveState::Failed, reason.clone())
        } else {
            (WaveState::Halted, format!("wave {failed} failed"))
        };
        w.state = state;
        w.ready_since_ms = None;
        w.reason = Some(description.clone());
        out.push(Transition {
            revision: r.revision.clone(),
            wave: w.name.clone(),
            state,
            description,
        });
    }
}

#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod rollback_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;
