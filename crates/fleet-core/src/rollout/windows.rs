//! Rollout windows, pure: whether a wave may start at a given instant, and when it next
//! may. As in Argo CD's sync windows, a deny window wins over any allow window, and when
//! any allow window applies, a wave starts only inside one. Windows hold only a wave's
//! start (its first batch): a wave under way finishes, and drift correction never waits.

use jiff::{tz::TimeZone, Timestamp};

use crate::model::window::{Window, WindowKind};

/// How far ahead the next opening is looked for.
const HORIZON_MS: u64 = 366 * 24 * 3600 * 1000;

/// Whether a wave may start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowVerdict {
    Open,
    Closed {
        /// When it next may (Unix ms); `None` when no window opens within a year.
        next_ms: Option<u64>,
        /// Which windows keep it, for the status.
        why: String,
    },
}

struct Compiled<'a> {
    window: &'a Window,
    cron: croner::Cron,
    tz: TimeZone,
}

impl Compiled<'_> {
    fn zoned(&self, ms: u64) -> Option<jiff::Zoned> {
        Timestamp::from_millisecond(i64::try_from(ms).ok()?)
            .ok()
            .map(|t| t.to_zoned(self.tz.clone()))
    }

    /// The end of an occurrence open at `t`: the first opening after `t - duration`, if
    /// that is not after `t`.
    fn open_until(&self, t: u64) -> Option<u64> {
        let from = self.zoned(t.saturating_sub(self.window.duration_ms))?;
        let start = ms(&self.cron.find_next_occurrence(&from, false).ok()?)?;
        (start <= t).then(|| start.saturating_add(self.window.duration_ms))
    }

    /// The first opening after `t`.
    fn next_opening(&self, t: u64) -> Option<u64> {
        ms(&self
            .cron
            .find_next_occurrence(&self.zoned(t)?, false)
            .ok()?)
    }
}

fn ms(z: &jiff::Zoned) -> Option<u64> {
    u64::try_from(z.timestamp().as_millisecond()).ok()
}

/// The windows at `now`: open, or closed with why and the next instant a wave may start.
pub fn judge(windows: &[Window], now: u64) -> WindowVerdict {
    let compiled: Vec<Compiled> = windows
        .iter()
        .filter_map(|w| {
            w.compiled().map(|(cron, tz)| Compiled {
                window: w,
                cron,
                tz,
            })
        })
        .collect();
    let denies: Vec<&Compiled> = compiled
        .iter()
        .filter(|c| c.window.kind == WindowKind::Deny)
        .collect();
    let allows: Vec<&Compiled> = compiled
        .iter()
        .filter(|c| c.window.kind == WindowKind::Allow)
        .collect();
    let closed_by = |t: u64| -> Option<(String, Option<u64>)> {
        let denying: Vec<(&Compiled, u64)> = denies
            .iter()
            .filter_map(|c| c.open_until(t).map(|end| (*c, end)))
            .collect();
        if !denying.is_empty() {
            let names: Vec<String> = denying.iter().map(|(c, _)| c.window.describe()).collect();
            let until = denying.iter().map(|(_, end)| *end).max();
            return Some((format!("inside deny window {}", names.join(", ")), until));
        }
        if allows.is_empty() || allows.iter().any(|c| c.open_until(t).is_some()) {
            return None;
        }
        let names: Vec<String> = allows.iter().map(|c| c.window.describe()).collect();
        let next = allows.iter().filter_map(|c| c.next_opening(t)).min();
        Some((format!("outside allow window {}", names.join(", ")), next))
    };
    let Some((why, mut next)) = closed_by(now) else {
        return WindowVerdict::Open;
    };
    // Step from boundary to boundary (a deny's end, an allow's opening) until one is open.
    for _ in 0..1000 {
        let Some(t) = next.filter(|t| *t <= now.saturating_add(HORIZON_MS)) else {
            break;
        };
        match closed_by(t) {
            None => {
                return WindowVerdict::Closed {
                    next_ms: Some(t),
                    why,
                }
            }
            Some((_, later)) => next = later.filter(|l| *l > t),
        }
    }
    WindowVerdict::Closed { next_ms: None, why }
}

/// `ms` as RFC 3339 in UTC, for reasons.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{ms} ms"), |t| t.to_string())
}
