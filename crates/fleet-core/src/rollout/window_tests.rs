//! Rollout windows with explicit instants: when a wave may start, and when it next may.

use super::tests::{ready, settled, states, target};
use super::windows::{judge, WindowVerdict};
use super::*;
use crate::model::window::{Window, WindowKind};
use WaveState::*;

fn at(rfc3339: &str) -> u64 {
    let t: jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(t.as_millisecond()).unwrap()
}

fn window(kind: WindowKind, schedule: &str, hours: u64, tz: &str) -> Window {
    Window {
        kind,
        schedule: schedule.into(),
        duration_ms: hours * 3600 * 1000,
        time_zone: tz.into(),
    }
}

fn allow(schedule: &str, hours: u64) -> Window {
    window(WindowKind::Allow, schedule, hours, "UTC")
}

fn deny(schedule: &str, hours: u64) -> Window {
    window(WindowKind::Deny, schedule, hours, "UTC")
}

/// `Some(next)` when closed, `None` when open.
fn next(windows: &[Window], now: &str) -> Option<Option<u64>> {
    match judge(windows, at(now)) {
        WindowVerdict::Open => None,
        WindowVerdict::Closed { next_ms, .. } => Some(next_ms),
    }
}

#[test]
fn without_windows_a_wave_may_always_start() {
    assert_eq!(judge(&[], at("2026-12-03T12:00:00Z")), WindowVerdict::Open);
}

#[test]
fn an_allow_window_opens_at_its_schedule_for_its_duration_end_excluded() {
    let w = [allow("0 22 * * *", 2)];
    assert_eq!(
        next(&w, "2026-12-03T21:00:00Z"),
        Some(Some(at("2026-12-03T22:00:00Z")))
    );
    assert_eq!(next(&w, "2026-12-03T22:00:00Z"), None);
    assert_eq!(next(&w, "2026-12-03T23:59:59Z"), None);
    assert_eq!(
        next(&w, "2026-12-04T00:00:00Z"),
        Some(Some(at("2026-12-04T22:00:00Z")))
    );
}

#[test]
fn a_deny_window_wins_over_the_allow_window_it_overlaps() {
    // Allowed 20:00 to 24:00, denied 22:00 to 23:00.
    let w = [allow("0 20 * * *", 4), deny("0 22 * * *", 1)];
    assert_eq!(
        next(&w, "2026-12-03T19:00:00Z"),
        Some(Some(at("2026-12-03T20:00:00Z")))
    );
    assert_eq!(next(&w, "2026-12-03T21:00:00Z"), None);
    assert_eq!(
        next(&w, "2026-12-03T22:30:00Z"),
        Some(Some(at("2026-12-03T23:00:00Z")))
    );
    match judge(&w, at("2026-12-03T22:30:00Z")) {
        WindowVerdict::Closed { why, .. } => {
            assert_eq!(why, "inside deny window deny 0 22 * * * for 1h (UTC)")
        }
        open => panic!("{open:?}"),
    }
    assert_eq!(next(&w, "2026-12-03T23:30:00Z"), None);
    // A deny over an allow's opening: the next start is the deny's end.
    let w = [allow("0 22 * * *", 2), deny("30 21 * * *", 1)];
    assert_eq!(
        next(&w, "2026-12-03T21:00:00Z"),
        Some(Some(at("2026-12-03T22:30:00Z")))
    );
}

#[test]
fn a_schedule_follows_its_time_zone_across_a_dst_change() {
    // 09:00 in New York: 14:00Z in winter (EST), 13:00Z from 8 March 2026 (EDT).
    let w = [window(
        WindowKind::Allow,
        "0 9 * * *",
        1,
        "America/New_York",
    )];
    assert_eq!(next(&w, "2026-03-07T14:30:00Z"), None);
    assert_eq!(
        next(&w, "2026-03-07T15:00:00Z"),
        Some(Some(at("2026-03-08T13:00:00Z")))
    );
    assert_eq!(next(&w, "2026-03-08T13:30:00Z"), None);
    assert_eq!(
        next(&w, "2026-03-08T14:00:00Z"),
        Some(Some(at("2026-03-09T13:00:00Z")))
    );
}

#[test]
fn a_schedule_in_the_dst_gap_opens_when_the_gap_ends() {
    // 02:30 does not exist in New York on 8 March 2026 (02:00 EST becomes 03:00 EDT):
    // croner runs it at the first instant after the gap, 03:00 EDT.
    let w = [window(
        WindowKind::Allow,
        "30 2 * * *",
        1,
        "America/New_York",
    )];
    assert_eq!(
        next(&w, "2026-03-08T05:00:00Z"),
        Some(Some(at("2026-03-08T07:00:00Z")))
    );
    assert_eq!(
        next(&w, "2026-03-08T08:00:00Z"),
        Some(Some(at("2026-03-09T06:30:00Z")))
    );
}

#[test]
fn a_window_that_never_opens_within_a_year_says_so() {
    // 29 February: the next is in 2028.
    let w = [allow("0 0 29 2 *", 1)];
    assert_eq!(next(&w, "2026-03-01T00:00:00Z"), Some(None));
    // Always denied.
    let w = [deny("* * * * *", 1)];
    assert_eq!(next(&w, "2026-03-01T00:00:00Z"), Some(None));
}

#[test]
fn a_wave_outside_its_window_waits_with_the_next_opening_then_starts() {
    let mut s = settled("a");
    let mut t = target("b", 0, "fb", &[]);
    t.waves[1].windows = vec![allow("0 22 * * *", 2)];
    let evening = at("2026-12-03T20:00:00Z");
    s.begin(&t, evening);
    let out = s.advance(&ready("b", &["dev-1"]), evening + 1000);
    assert_eq!(states(&s)[1], ("staging", WaitingForWindow));
    assert_eq!(s.given("stg-1"), Some("a"));
    let w = &s.rollout.as_ref().unwrap().waves[1];
    assert_eq!(w.next_window_ms, Some(at("2026-12-03T22:00:00Z")));
    let said = out.iter().find(|t| t.state == WaitingForWindow).unwrap();
    assert_eq!(
        said.description,
        "waiting for a window: outside allow window allow 0 22 * * * for 2h (UTC); may start at 2026-12-03T22:00:00Z"
    );
    // Still closed: no new transition.
    let again = s.advance(&ready("b", &["dev-1"]), at("2026-12-03T21:59:00Z"));
    assert!(again.is_empty(), "{again:?}");
    s.advance(&ready("b", &["dev-1"]), at("2026-12-03T22:00:00Z"));
    assert_eq!(states(&s)[1], ("staging", Progressing));
    assert_eq!(s.given("stg-1"), Some("b"));
    assert_eq!(s.rollout.as_ref().unwrap().waves[1].next_window_ms, None);
}

#[test]
fn a_wave_with_nothing_to_change_completes_whatever_its_windows() {
    let mut s = settled("a");
    // Only dev changes; staging and prod have nothing to roll out.
    let mut t = target("b", 0, "fa", &[("dev-1", "fb")]);
    t.waves[1].windows = vec![deny("* * * * *", 1)];
    let now = at("2026-12-03T20:00:00Z");
    s.begin(&t, now);
    s.advance(&ready("b", &["dev-1"]), now + 1000);
    assert_eq!(states(&s)[1], ("staging", Complete));
}
