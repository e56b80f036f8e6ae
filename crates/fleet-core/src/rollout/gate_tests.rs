//! Metric gates in the rollout: a reading goes in, a transition comes out.

use std::collections::BTreeSet;

use super::gates::{GateOutcome, GateReading, Readings, Sample};
use super::tests::{ready, settled, states, target, S};
use super::*;
use WaveState::*;

const QUERY: &str = "sum(rate(errors_total{cluster=~\"$wave_clusters\"}[5m]))";

/// Revision `b` over [`settled`]`("a")`, with a 5 s bake and a 60 s timeout, staging gated
/// by [`QUERY`] at most 1; dev is already complete at 10 s and staging progressing.
fn gated() -> State {
    let mut s = settled("a");
    let mut t = target("b", 5 * S, "fb", &[]);
    t.waves[1].gates = vec![Gate {
        name: "errors".into(),
        query: QUERY.into(),
        min: None,
        max: Some(1.0),
    }];
    s.begin(&t, 0);
    s.advance(&ready("b", &["dev-1"]), S);
    s.advance(&ready("b", &["dev-1"]), 10 * S);
    assert_eq!(states(&s)[1], ("staging", Progressing));
    s
}

const ALL: [&str; 3] = ["dev-1", "stg-1", "stg-2"];

fn reading(at: u64, outcome: GateOutcome) -> Readings {
    let r = GateReading {
        revision: "b".into(),
        wave: "staging".into(),
        gate: "errors".into(),
        at_ms: at,
        outcome,
    };
    [(("staging".into(), "errors".into()), r)].into()
}

fn value(v: f64) -> GateOutcome {
    GateOutcome::Samples(vec![Sample {
        labels: String::new(),
        value: v,
    }])
}

fn step(s: &mut State, readings: &Readings, now: u64) -> Vec<Transition> {
    s.advance_judging(&ready("b", &ALL), &BTreeSet::new(), readings, now)
}

fn reason(s: &State, wave: usize) -> String {
    s.rollout.as_ref().unwrap().waves[wave]
        .reason
        .clone()
        .unwrap_or_default()
}

#[test]
fn the_gate_query_names_the_baking_waves_changed_clusters_only_while_it_bakes() {
    let mut s = gated();
    assert!(s.gate_checks().is_empty(), "not baking yet");
    step(&mut s, &Readings::new(), 11 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    let checks = s.gate_checks();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        checks[0].query,
        "sum(rate(errors_total{cluster=~\"stg-1|stg-2\"}[5m]))"
    );
    assert_eq!(
        (checks[0].wave.as_str(), checks[0].revision.as_str()),
        ("staging", "b")
    );
}

#[test]
fn a_value_above_the_threshold_fails_the_wave_at_once_with_query_value_and_threshold() {
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    let t = step(&mut s, &reading(12 * S, value(3.5)), 12 * S);
    assert_eq!(states(&s)[1], ("staging", Failed));
    assert_eq!(states(&s)[2], ("prod", Halted));
    let failed = t.iter().find(|t| t.state == Failed).unwrap();
    assert_eq!(
        failed.description,
        "gate errors: sum(rate(errors_total{cluster=~\"stg-1|stg-2\"}[5m])) = 3.5, outside the threshold max 1"
    );
    assert_eq!(s.given("prod-1"), Some("a"));
    assert!(s.gate_checks().is_empty(), "a halted rollout asks nothing");
}

#[test]
fn the_wave_completes_only_after_its_bake_and_a_pass_read_since_it_became_ready() {
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    // A pass read before the wave became ready (11 s) does not count: while baking the
    // reason says what the gates wait for, and once baked the wave still waits.
    let early = reading(10 * S, value(0.0));
    step(&mut s, &early, 12 * S);
    assert_eq!(
        reason(&s, 1),
        "baking; gates so far: gate errors: not evaluated yet"
    );
    step(&mut s, &early, 17 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    assert_eq!(
        reason(&s, 1),
        "baked; waiting for gates: gate errors: not evaluated yet"
    );
    // A pass read inside the bake: complete once the bake is over, not before.
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    let pass = reading(12 * S, value(1.0));
    step(&mut s, &pass, 15 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    assert_eq!(reason(&s, 1), "");
    let t = step(&mut s, &pass, 16 * S);
    assert_eq!(states(&s)[1], ("staging", Complete));
    assert!(t
        .iter()
        .any(|t| t.wave == "staging" && t.description.contains("gates passed: errors")));
    assert_eq!(s.given("prod-1"), Some("b"));
}

#[test]
fn no_data_or_no_prometheus_keeps_the_wave_baking_until_the_timeout_after_the_bake() {
    for outcome in [
        GateOutcome::Samples(Vec::new()),
        value(f64::NAN),
        GateOutcome::Unreachable("connection refused".into()),
    ] {
        let mut s = gated();
        step(&mut s, &Readings::new(), 11 * S);
        // Baked at 16 s; inconclusive up to the 60 s timeout after that.
        step(&mut s, &reading(15 * S, outcome.clone()), 20 * S);
        assert_eq!(states(&s)[1], ("staging", Baking), "{outcome:?}");
        assert!(
            reason(&s, 1).starts_with("baked; waiting for gates"),
            "{s:?}"
        );
        step(&mut s, &reading(70 * S, outcome.clone()), 75 * S);
        assert_eq!(states(&s)[1], ("staging", Baking), "{outcome:?}");
        step(&mut s, &reading(75 * S, outcome.clone()), 76 * S);
        assert_eq!(states(&s)[1], ("staging", Failed), "{outcome:?}");
        assert!(
            reason(&s, 1).starts_with("gates inconclusive 1m after the bake"),
            "{s:?}"
        );
    }
}

#[test]
fn an_outage_that_ends_before_the_timeout_lets_the_wave_complete() {
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    let down = reading(20 * S, GateOutcome::Unreachable("timed out".into()));
    step(&mut s, &down, 30 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    step(&mut s, &reading(40 * S, value(0.0)), 40 * S);
    assert_eq!(states(&s)[1], ("staging", Complete));
}

#[test]
fn a_refused_query_fails_the_wave_at_once() {
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    let refused = reading(12 * S, GateOutcome::Refused("parse error".into()));
    step(&mut s, &refused, 12 * S);
    assert_eq!(states(&s)[1], ("staging", Failed));
    assert!(reason(&s, 1).contains("Prometheus refused"), "{s:?}");
}

#[test]
fn a_failing_series_of_several_is_named_and_readings_of_another_revision_ignored() {
    let mut s = gated();
    step(&mut s, &Readings::new(), 11 * S);
    let mut stale = reading(12 * S, value(9.0));
    stale.values_mut().for_each(|r| r.revision = "a".into());
    step(&mut s, &stale, 12 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    let samples = GateOutcome::Samples(vec![
        Sample {
            labels: "{cluster=\"stg-1\"}".into(),
            value: 0.0,
        },
        Sample {
            labels: "{cluster=\"stg-2\"}".into(),
            value: 2.0,
        },
    ]);
    step(&mut s, &reading(13 * S, samples), 13 * S);
    assert!(
        reason(&s, 1).contains("= 2 (series {cluster=\"stg-2\"})"),
        "{s:?}"
    );
}
