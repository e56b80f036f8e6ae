//! Writes that undo someone else's: drift corrections, and updates over an object that
//! another writer applied since this agent did. Each object gets a small budget of them
//! that refills slowly, so two writers that disagree (two agents on one fleet, a
//! controller that rewrites a field) cannot fall into an apply loop: past the budget the
//! agent holds its write and says who it is fighting with, instead of fighting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::render::ObjectRef;
use crate::text::escape;

use super::diff::{Action, ApplyReason, ANNOTATION_APPLIED_BY, ANNOTATION_DESIRED_HASH};
use super::live::LiveObject;

/// Contested writes one object may take at once.
pub const BURST: u32 = 3;
/// Time for one more contested write to be allowed.
pub const REFILL: Duration = Duration::from_secs(60);

/// Another writer's change that an apply would undo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contest {
    /// The object drifted: someone edited or deleted it.
    Drift,
    /// Another psql-fleet applied a different desired state since this agent did (the
    /// field manager is the same, so the desired-hash annotation tells them apart).
    AnotherWriter {
        /// Their desired hash, and who they said they were.
        hash: String,
        applied_by: Option<String>,
    },
}

impl std::fmt::Display for Contest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Contest::Drift => write!(f, "drift keeps coming back"),
            // Both come from the cluster, where anyone may write anything: escaped, and the
            // name cut short, before they reach a log, a terminal or an Event.
            Contest::AnotherWriter { hash, applied_by } => write!(
                f,
                "another writer applied desired-hash {} (applied by {})",
                escape(hash),
                applied_by
                    .as_deref()
                    .map(|by| escape(&by.chars().take(120).collect::<String>()).into_owned())
                    .unwrap_or_else(|| "an unnamed writer".into())
            ),
        }
    }
}

/// Whether `action` undoes another writer's change. `last_applied` is the desired hash this
/// agent last wrote to the object, when it remembers one.
pub fn contest(
    action: &Action,
    live: Option<&LiveObject>,
    last_applied: Option<&str>,
) -> Option<Contest> {
    let Action::Apply { reason, .. } = action else {
        return None;
    };
    match reason {
        ApplyReason::CorrectDrift(_) => Some(Contest::Drift),
        ApplyReason::Create => None,
        ApplyReason::Update => {
            let live = live?;
            let theirs = live.annotation(ANNOTATION_DESIRED_HASH)?;
            (last_applied? != theirs).then(|| Contest::AnotherWriter {
                hash: theirs.to_string(),
                applied_by: live.annotation(ANNOTATION_APPLIED_BY).map(str::to_string),
            })
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When the last token was taken or refilled.
    since: Instant,
}

/// The contested writes each object has left; a token bucket per object.
#[derive(Debug, Default)]
pub struct WriteBudget {
    buckets: BTreeMap<ObjectRef, Bucket>,
}

impl WriteBudget {
    /// Takes one contested write for `at`; when none is left, how long until one is.
    pub fn take(&mut self, at: &ObjectRef, now: Instant) -> Result<(), Duration> {
        let bucket = self.buckets.entry(at.clone()).or_insert(Bucket {
            tokens: BURST,
            since: now,
        });
        let elapsed = now.saturating_duration_since(bucket.since);
        let refills = (elapsed.as_secs_f64() / REFILL.as_secs_f64()) as u32;
        if refills > 0 {
            bucket.tokens = (bucket.tokens + refills).min(BURST);
            bucket.since += REFILL * refills;
        }
        if bucket.tokens == 0 {
            return Err(REFILL.saturating_sub(now.saturating_duration_since(bucket.since)));
        }
        if bucket.tokens == BURST {
            bucket.since = now;
        }
        bucket.tokens -= 1;
        Ok(())
    }

    /// Forgets objects whose budget is whole again, so the map does not grow with time.
    pub fn settle(&mut self, now: Instant) {
        self.buckets.retain(|_, b| {
            b.tokens < BURST && now.saturating_duration_since(b.since) < REFILL * BURST
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::diff::Drift;
    use crate::reconcile::diff::Serialized;
    use crate::reconcile::tests::{claim, rendered};
    use crate::render::ObjectKind;

    fn at() -> ObjectRef {
        ObjectRef {
            kind: ObjectKind::Release,
            name: "r".into(),
            namespace: "n".into(),
        }
    }

    #[test]
    fn a_fight_gets_a_burst_then_one_write_a_minute() {
        let mut budget = WriteBudget::default();
        let start = Instant::now();
        let mut allowed = 0;
        // A writer that undoes every write at once, for five minutes, tried every second.
        for s in 0..300 {
            if budget.take(&at(), start + Duration::from_secs(s)).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, BURST + 4, "three at once, then one per minute");
        let held = budget
            .take(&at(), start + Duration::from_secs(299))
            .unwrap_err();
        assert!(held <= REFILL, "{held:?}");
    }

    #[test]
    fn objects_have_budgets_of_their_own_and_a_quiet_one_is_forgotten() {
        let mut budget = WriteBudget::default();
        let now = Instant::now();
        let other = ObjectRef {
            name: "other".into(),
            ..at()
        };
        for _ in 0..BURST {
            budget.take(&at(), now).unwrap();
        }
        assert!(budget.take(&at(), now).is_err());
        assert!(budget.take(&other, now).is_ok());
        budget.settle(now + REFILL * BURST);
        assert!(budget.buckets.is_empty());
        assert!(budget.take(&at(), now + REFILL * BURST).is_ok());
    }

    fn update(reason: ApplyReason) -> Action {
        let object = rendered(&claim("p", "c1"), false).remove(0);
        Action::Apply {
            object: Box::new(Serialized::new(object).into_apply(None)),
            reason,
            force: false,
        }
    }

    fn live_with(hash: &str) -> LiveObject {
        LiveObject::from_json(json!({
            "kind": "Release",
            "metadata": {"name": "r", "namespace": "n", "annotations": {
                ANNOTATION_DESIRED_HASH: hash,
                ANNOTATION_APPLIED_BY: "psql-fleet on host-b",
            }}
        }))
        .unwrap()
    }

    #[test]
    fn an_update_over_a_hash_this_agent_did_not_write_is_another_writer() {
        let theirs = live_with("b");
        assert_eq!(
            contest(&update(ApplyReason::Update), Some(&theirs), Some("a")),
            Some(Contest::AnotherWriter {
                hash: "b".into(),
                applied_by: Some("psql-fleet on host-b".into())
            })
        );
        let forged = live_with("b\u{1b}[2J\nfake");
        let said = contest(&update(ApplyReason::Update), Some(&forged), Some("a"))
            .unwrap()
            .to_string();
        assert!(!said.chars().any(char::is_control), "{said}");
        // Our own last apply, moving on to a new revision: no contest.
        assert_eq!(
            contest(
                &update(ApplyReason::Update),
                Some(&live_with("a")),
                Some("a")
            ),
            None
        );
        // Nothing remembered (after a restart): the first update is not a contest.
        assert_eq!(
            contest(&update(ApplyReason::Update), Some(&theirs), None),
            None
        );
        assert_eq!(contest(&update(ApplyReason::Create), None, Some("a")), None);
        assert_eq!(
            contest(
                &update(ApplyReason::CorrectDrift(Drift::Deleted)),
                None,
                None
            ),
            Some(Contest::Drift)
        );
    }
}
