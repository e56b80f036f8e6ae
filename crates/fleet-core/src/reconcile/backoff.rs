//! Retry delays: exponential in the attempt, capped, with jitter so that clusters failing
//! together do not retry together. Pure: the caller supplies the random number.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 for the first retry). `random` in `[0, 1)`
    /// picks a point between half the exponential delay and all of it, so the delay never
    /// collapses to zero and never exceeds the cap.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        let exponential = self.base.saturating_mul(factor).min(self.max);
        let random = random.clamp(0.0, 1.0);
        exponential.mul_f64(0.5 + 0.5 * random)
    }
}

/// What woke a cluster's worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Something changed: a watch event or a new revision.
    Change,
    /// The periodic resync.
    Resync,
    /// The backoff after a failed pass ran out.
    Retry,
}

/// Whether a wake runs a pass now, given whether the last pass failed and its retry is
/// still pending. A resync waits for the retry, so a failure that persists is retried at
/// the backoff's pace and not on every resync; a change may be what cures the failure, so
/// it runs a pass at once.
pub fn pass_due(wake: Wake, retry_pending: bool) -> bool {
    !(wake == Wake::Resync && retry_pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_waits_for_a_pending_retry_and_a_change_does_not() {
        let cases = [
            (Wake::Resync, true, false),
            (Wake::Resync, false, true),
            (Wake::Change, true, true),
            (Wake::Change, false, true),
            (Wake::Retry, true, true),
            (Wake::Retry, false, true),
        ];
        for (wake, pending, due) in cases {
            assert_eq!(pass_due(wake, pending), due, "{wake:?} pending {pending}");
        }
    }

    #[test]
    fn delays_double_per_attempt_until_the_cap() {
        let b = Backoff::default();
        let cases = [
            (0, 500),
            (1, 1000),
            (2, 2000),
            (6, 32_000),
            (7, 60_000),
            (40, 60_000),
        ];
        for (attempt, ms) in cases {
            assert_eq!(
                b.delay(attempt, 1.0),
                Duration::from_millis(ms),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay() {
        let b = Backoff::default();
        for attempt in 0..50 {
            for r in [0.0, 0.3, 0.999, -1.0, 7.0] {
                let d = b.delay(attempt, r);
                let full = b.delay(attempt, 1.0);
                assert!(d >= full / 2 && d <= full && d <= b.max, "{attempt} {r}");
            }
        }
    }
}
