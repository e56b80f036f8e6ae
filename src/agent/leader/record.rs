//! The leader election decision, client-go's `tryAcquireOrRenew` without the I/O: given
//! the Lease as last read, when this replica first saw that version, and the time now,
//! take the Lease, renew it, or leave it to its holder. Expiry is judged on this replica's
//! own monotonic clock from when it *observed* the record change, never from the
//! `renewTime` another host wrote, so clock skew between hosts cannot shorten a lease.

use std::time::{Duration, Instant};

/// The fields of a Lease's spec that leader election reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity`; empty or absent means released.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds` as the holder wrote it.
    pub duration_seconds: Option<i32>,
    /// `spec.acquireTime` and `spec.renewTime`, RFC 3339 with microseconds.
    pub acquire_time: Option<String>,
    pub renew_time: Option<String>,
    /// `spec.leaseTransitions`: how many times the holder changed.
    pub transitions: i32,
}

impl Record {
    /// The holder, unless the Lease is released.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }
}

/// What to do with the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write `record` (this replica as holder) under the version read.
    Write(Record),
    /// Another replica holds it for `expires_in` more at least.
    HeldBy {
        holder: String,
        expires_in: Duration,
    },
}

/// The decision for `me` on `current`, first seen at `observed_at`; `now` is when the
/// write would be made (its RFC 3339 form `now_text`); `duration` is this replica's
/// lease duration, written into the Lease, and the one assumed when the holder wrote none.
pub fn decide(
    me: &str,
    current: &Record,
    observed_at: Instant,
    now: Instant,
    now_text: &str,
    duration: Duration,
) -> Decision {
    let holds = current.holder() == Some(me);
    if let Some(holder) = current.holder().filter(|_| !holds) {
        let written = current
            .duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(duration, Duration::from_secs);
        let expires = observed_at + written;
        if expires > now {
            return Decision::HeldBy {
                holder: holder.to_string(),
                expires_in: expires - now,
            };
        }
    }
    let (acquire_time, transitions) = if holds {
        (current.acquire_time.clone(), current.transitions)
    } else {
        (Some(now_text.to_string()), current.transitions + 1)
    };
    Decision::Write(Record {
        holder: Some(me.to_string()),
        duration_seconds: Some(seconds(duration)),
        acquire_time,
        renew_time: Some(now_text.to_string()),
        transitions,
    })
}

/// Whole seconds for `leaseDurationSeconds`, rounded up (a lease is never written shorter
/// than this replica assumes it is).
pub fn seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s.max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str, transitions: i32) -> Record {
        Record {
            holder: Some(holder.into()),
            duration_seconds: Some(15),
            acquire_time: Some("t0".into()),
            renew_time: Some("t1".into()),
            transitions,
        }
    }

    #[test]
    fn a_lease_held_by_another_is_left_until_a_full_duration_after_it_was_seen_to_change() {
        let seen = Instant::now();
        let at = |s| seen + Duration::from_secs(s);
        assert_eq!(
            decide("b", &held_by("a", 3), seen, at(14), "now", D),
            Decision::HeldBy {
                holder: "a".into(),
                expires_in: Duration::from_secs(1)
            }
        );
        let Decision::Write(taken) = decide("b", &held_by("a", 3), seen, at(15), "now", D) else {
            panic!("an expired lease is taken");
        };
        assert_eq!(taken.holder.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time.as_deref(), Some("now"));
        assert_eq!(taken.renew_time.as_deref(), Some("now"));
        assert_eq!(taken.transitions, 4, "a new holder is a transition");
    }

    #[test]
    fn the_holder_renews_keeping_its_acquire_time_and_transitions() {
        let seen = Instant::now();
        let Decision::Write(renewed) = decide("a", &held_by("a", 3), seen, seen, "now", D) else {
            panic!("the holder renews");
        };
        assert_eq!(renewed.acquire_time.as_deref(), Some("t0"));
        assert_eq!(renewed.renew_time.as_deref(), Some("now"));
        assert_eq!(renewed.transitions, 3);
    }

    #[test]
    fn a_released_or_new_lease_is_taken_at_once() {
        let seen = Instant::now();
        for released in [
            Record::default(),
            Record {
                holder: Some(String::new()),
                ..held_by("", 2)
            },
        ] {
            let Decision::Write(taken) = decide("b", &released, seen, seen, "now", D) else {
                panic!("a released lease is taken");
            };
            assert_eq!(taken.holder.as_deref(), Some("b"));
        }
    }

    #[test]
    fn the_holders_written_duration_counts_and_durations_round_up_to_seconds() {
        let seen = Instant::now();
        let short = Record {
            duration_seconds: Some(3),
            ..held_by("a", 0)
        };
        assert!(matches!(
            decide("b", &short, seen, seen + Duration::from_secs(3), "now", D),
            Decision::Write(_)
        ));
        assert_eq!(seconds(Duration::from_millis(2500)), 3);
        assert_eq!(seconds(Duration::from_secs(15)), 15);
        assert_eq!(seconds(Duration::from_millis(10)), 1);
    }
}
