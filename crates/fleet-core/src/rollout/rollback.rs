//! Rollback, pure: a wave's clusters given back the revision each ran before the wave gave
//! it the one being rolled out. It happens when a wave with `rollback: auto` fails, or on
//! `psql-fleet rollout undo [wave]`; either way the rollout is then halted, saying both why
//! it stopped and what was given back.
//!
//! Giving back is all it does: each cluster's worker then reconciles to the older
//! revision's desired state through the same apply and prune rules as any revision, so the
//! objects the older revision had are applied again (never deleted) and only what the
//! failed revision added is pruned, in the safe order.
//!
//! A cluster the wave gave the revision with nothing before it (one new to the fleet in
//! that revision) has nothing to go back to: it is given nothing, which leaves its objects
//! as they are (nothing is written to or deleted from a cluster that is given nothing)
//! until a later revision or a resume reaches it. Emptying it instead would delete a
//! claim's databases on the strength of a failed readiness check; removing its `Cluster`
//! file is what prunes it.
//!
//! Only the wave rolled back is touched: earlier waves that completed keep the revision,
//! later ones were never given it. `resume` afterwards starts the rolled-back wave over with
//! the same revision (as Argo Rollouts' retry and Flagger's next analysis do), and a newer
//! revision starts its rollout afresh, as after any failure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{short, ControlError, Given, Halt, Rollout, State, Transition, WaveState};
use crate::model::fleet::Rollback;

/// What a rollback of a wave did, kept in the wave for the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The clusters given back a previous revision.
    pub clusters: Vec<String>,
    /// The clusters that had none, left as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// The revisions given back.
    pub to: Vec<String>,
    /// `auto`, or the control token's name that undid it.
    pub by: String,
    pub at_ms: u64,
}

impl RolledBack {
    /// "rolled back 2 clusters to 0123456789ab" (and the clusters left as they are).
    pub fn summary(&self) -> String {
        let n = self.clusters.len();
        let to: Vec<&str> = self.to.iter().map(|r| short(r)).collect();
        let mut text = format!(
            "{ROLLED_BACK}{n} cluster{} to {}",
            if n == 1 { "" } else { "s" },
            if to.is_empty() {
                "nothing".to_string()
            } else {
                to.join(", ")
            }
        );
        if !self.left.is_empty() {
            text.push_str(&format!(
                " ({} new in this revision left as {}: {})",
                self.left.len(),
                if self.left.len() == 1 {
                    "it is"
                } else {
                    "they are"
                },
                self.left.join(", ")
            ));
        }
        text
    }
}

/// Gives wave `i`'s clusters back what they were given before it; `None` when it gave
/// nothing (not started, or rolled back already).
fn give_back(
    clusters: &mut BTreeMap<String, Given>,
    r: &mut Rollout,
    i: usize,
    by: &str,
    now: u64,
) -> Option<RolledBack> {
    let w = r.waves.get_mut(i)?;
    if w.previous.is_empty() {
        return None;
    }
    let mut back = Vec::new();
    let mut left = Vec::new();
    let mut to = BTreeSet::new();
    for (cluster, before) in std::mem::take(&mut w.previous) {
        match before {
            Some(given) => {
                to.insert(given.revision.clone());
                clusters.insert(cluster.clone(), given);
                back.push(cluster);
            }
            None => {
                clusters.remove(&cluster);
                left.push(cluster);
            }
        }
    }
    let done = RolledBack {
        clusters: back,
        left,
        to: to.into_iter().collect(),
        by: by.to_string(),
        at_ms: now,
    };
    w.rolled_back = Some(done.clone());
    w.stragglers.clear();
    Some(done)
}

/// After a wave failed in this step: with `rollback: auto`, its clusters go back, and the
/// halt and the wave's reason say so after the failure.
pub(super) fn after_failure(
    clusters: &mut BTreeMap<String, Given>,
    r: &mut Rollout,
    now: u64,
    out: &mut Vec<Transition>,
) {
    let Some(i) = r.waves.iter().position(|w| w.state == WaveState::Failed) else {
        return;
    };
    if r.waves[i].rollback != Rollback::Auto {
        return;
    }
    let Some(done) = give_back(clusters, r, i, "auto", now) else {
        return;
    };
    let failure = r
        .halted
        .as_ref()
        .map(|h| h.reason.clone())
        .unwrap_or_default();
    let reason = format!("{}; the wave failed: {failure}", done.summary());
    if let Some(h) = r.halted.as_mut() {
        h.reason = reason.clone();
    }
    let w = &mut r.waves[i];
    w.reason = Some(reason.clone());
    out.push(Transition {
        revision: r.revision.clone(),
        wave: w.name.clone(),
        state: WaveState::Failed,
        description: reason,
    });
}

/// Whether `t` is a wave being given back its previous revision (automatically or by
/// `rollout undo`): what GitHub feedback says in a comment besides the commit status.
pub fn is_rollback(t: &Transition) -> bool {
    // A failed wave under `rollback: auto` ends failed, an undone one halted.
    matches!(t.state, WaveState::Failed | WaveState::Halted)
        && t.description.starts_with(ROLLED_BACK)
}

/// How every rollback's description begins ([`RolledBack::summary`]).
const ROLLED_BACK: &str = "rolled back ";

impl State {
    /// `psql-fleet rollout undo [wave]`: the named wave's clusters (else those of the last
    /// wave that gave its clusters the revision) are given back what they ran before, and
    /// the rollout halts there. A rollout already halted stays so, its reason kept after
    /// the rollback's.
    pub fn undo(
        &mut self,
        wave: Option<&str>,
        by: &str,
        reason: &str,
        now: u64,
    ) -> Result<Vec<Transition>, ControlError> {
        let reason = crate::text::check(reason, super::MAX_REASON_CHARS)?;
        let State { clusters, rollout } = self;
        let r = rollout
            .as_mut()
            .ok_or(ControlError::NoRollout { verb: "undo" })?;
        let i = match wave {
            Some(name) => r.waves.iter().position(|w| w.name == name).ok_or_else(|| {
                ControlError::UnknownWave {
                    wave: name.to_string(),
                    revision: short(&r.revision).to_string(),
                }
            })?,
            None => r
                .waves
                .iter()
                .rposition(|w| !w.previous.is_empty())
                .ok_or_else(|| ControlError::NothingToUndo {
                    wave: None,
                    revision: short(&r.revision).to_string(),
                })?,
        };
        let name = r.waves[i].name.clone();
        let revision = short(&r.revision).to_string();
        let Some(done) = give_back(clusters, r, i, by, now) else {
            return Err(ControlError::NothingToUndo {
                wave: Some(name),
                revision,
            });
        };
        let mut why = format!("{} by an operator", done.summary());
        if !reason.is_empty() {
            why.push_str(&format!(": {reason}"));
        }
        if let Some(h) = &r.halted {
            why.push_str(&format!("; halted before: {}", h.reason));
        }
        // Not an operator's halt: a newer revision starts afresh, as after a failure.
        r.halted = Some(Halt {
            wave: name.clone(),
            reason: why.clone(),
            by_operator: false,
            at_ms: now,
        });
        let mut out = Vec::new();
        for (j, w) in r.waves.iter_mut().enumerate() {
            // The wave undone halts even when it had completed, so that a resume gives
            // it the revision again.
            if j != i && w.state == WaveState::Complete {
                continue;
            }
            w.state = WaveState::Halted;
            w.ready_since_ms = None;
            w.next_window_ms = None;
            let description = if j == i {
                w.reason = Some(why.clone());
                why.clone()
            } else {
                format!("wave {name} rolled back")
            };
            out.push(Transition {
                revision: r.revision.clone(),
                wave: w.name.clone(),
                state: WaveState::Halted,
                description,
            });
        }
        Ok(out)
    }
}
