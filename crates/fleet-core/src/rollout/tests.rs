use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

pub(super) const S: u64 = 1000;

/// Waves dev (dev-1), staging (stg-1, stg-2), prod (prod-1), each with the given bake time
/// and a 60 s timeout; every cluster's fingerprint is `fp` unless overridden.
pub(super) fn target(revision: &str, bake: u64, fp: &str, overrides: &[(&str, &str)]) -> Target {
    let wave = |name: &str, clusters: &[&str]| WaveDef {
        name: name.into(),
        bake_time: Duration::from_millis(bake),
        timeout: Duration::from_secs(60),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        ..WaveDef::default()
    };
    let mut fingerprints: BTreeMap<String, String> = ["dev-1", "stg-1", "stg-2", "prod-1"]
        .iter()
        .map(|c| (c.to_string(), fp.to_string()))
        .collect();
    for (c, f) in overrides {
        fingerprints.insert(c.to_string(), f.to_string());
    }
    Target {
        revision: revision.into(),
        waves: vec![
            wave("dev", &["dev-1"]),
            wave("staging", &["stg-1", "stg-2"]),
            wave("prod", &["prod-1"]),
        ],
        fingerprints,
    }
}

/// A cluster's report at `revision`: not ready, and why.
pub(super) fn not_ready(revision: &str, reason: &str) -> Health {
    Health {
        revision: revision.into(),
        reason: Some(reason.into()),
        ..Health::default()
    }
}

pub(super) fn ready(revision: &str, clusters: &[&str]) -> BTreeMap<String, Health> {
    clusters
        .iter()
        .map(|c| {
            (
                c.to_string(),
                Health {
                    revision: revision.into(),
                    ready: true,
                    ..Health::default()
                },
            )
        })
        .collect()
}

pub(super) fn states(state: &State) -> Vec<(&str, WaveState)> {
    state
        .rollout
        .as_ref()
        .unwrap()
        .waves
        .iter()
        .map(|w| (w.name.as_str(), w.state))
        .collect()
}

/// A state where revision `a` is given to every cluster and fully rolled out.
pub(super) fn settled(a: &str) -> State {
    let mut s = State::default();
    s.begin(&target(a, 0, "fa", &[]), 0);
    let all = ["dev-1", "stg-1", "stg-2", "prod-1"];
    for _ in 0..3 {
        s.advance(&ready(a, &all), 0);
    }
    assert!(s.rollout.as_ref().unwrap().complete(), "{s:?}");
    s
}

use WaveState::*;

#[test]
fn a_wide_wave_waiting_names_ten_clusters_and_counts_the_rest() {
    let clusters: Vec<String> = (0..25).map(|i| format!("c-{i:02}")).collect();
    let target = Target {
        revision: "a".into(),
        waves: vec![WaveDef {
            name: "all".into(),
            timeout: Duration::from_secs(60),
            clusters: clusters.clone(),
            ..WaveDef::default()
        }],
        fingerprints: clusters.iter().map(|c| (c.clone(), "fa".into())).collect(),
    };
    let reason = |s: &State| s.rollout.as_ref().unwrap().waves[0].reason.clone();
    let mut s = State::default();
    s.begin(&target, 0);
    // c-00..c-04 ready; the others reported not ready or not at all.
    let mut health = ready("a", &["c-00", "c-01", "c-02", "c-03", "c-04"]);
    health.insert("c-05".into(), not_ready("a", "Release x: Ready=False"));
    s.advance(&health, S);
    let named: Vec<String> = (6..15)
        .map(|i| format!("cluster c-{i:02}: no reconcile pass at this revision yet"))
        .collect();
    assert_eq!(
        reason(&s).as_deref(),
        Some(
            format!(
                "cluster c-05: Release x: Ready=False; {}; and 10 more clusters not ready",
                named.join("; ")
            )
            .as_str()
        )
    );
    // One left over is "cluster", none is no count at all.
    let mut all_but: Vec<&str> = clusters.iter().map(String::as_str).collect();
    all_but.retain(|c| {
        ![
            "c-13", "c-14", "c-15", "c-16", "c-17", "c-18", "c-19", "c-20", "c-21", "c-22", "c-23",
        ]
        .contains(c)
    });
    s.advance(&ready("a", &all_but), 2 * S);
    assert!(
        reason(&s).unwrap().ends_with(
            "cluster c-22: no reconcile pass at this revision yet; and 1 more cluster not ready"
        ),
        "{:?}",
        reason(&s)
    );
    all_but.push("c-23");
    s.advance(&ready("a", &all_but), 3 * S);
    assert!(
        reason(&s)
            .unwrap()
            .ends_with("cluster c-22: no reconcile pass at this revision yet"),
        "{:?}",
        reason(&s)
    );
}

#[test]
fn a_wide_wave_applying_names_ten_clusters_and_counts_the_rest() {
    let started = |t: Vec<Transition>| {
        t.into_iter()
            .find(|t| t.state == Progressing)
            .map(|t| t.description)
    };
    let ten = names(0, 10).join(", ");
    let mut s = State::default();
    let t = s.begin(&one_wave("a", 25, None, None, 0, 0), 0);
    assert_eq!(
        started(t),
        Some(format!("applying to {ten} and 15 more clusters"))
    );
    // Batches of eleven: one left over is "cluster"; ten or fewer are all named.
    let mut s = State::default();
    let t = s.begin(&one_wave("a", 21, Some(Share::Count(11)), None, 0, 0), 0);
    assert_eq!(
        started(t),
        Some(format!(
            "batch 1 of 2: applying to {ten} and 1 more cluster"
        ))
    );
    let t = s.advance(&ready_all("a", &names(0, 11)), S);
    assert_eq!(
        started(t),
        Some(format!(
            "batch 2 of 2: applying to {}",
            names(11, 21).join(", ")
        ))
    );
}

#[test]
fn a_first_revision_starts_with_the_first_wave_only() {
    let mut s = State::default();
    let t = s.begin(&target("a", 0, "fa", &[]), 0);
    assert_eq!(
        states(&s),
        vec![
            ("dev", Progressing),
            ("staging", Pending),
            ("prod", Pending)
        ]
    );
    assert_eq!(s.given("dev-1"), Some("a"));
    assert_eq!(s.given("stg-1"), None);
    assert_eq!(s.given("prod-1"), None);
    assert!(t
        .iter()
        .any(|t| t.wave == "dev" && t.state == Progressing && t.description.contains("dev-1")));
}

#[test]
fn the_next_wave_starts_only_after_the_previous_is_ready_and_baked() {
    let mut s = settled("a");
    s.begin(&target("b", 5 * S, "fb", &[]), 100 * S);
    assert_eq!(s.given("dev-1"), Some("b"));
    assert_eq!(s.given("stg-1"), Some("a"));
    // Ready: baking, staging still waits.
    let t = s.advance(&ready("b", &["dev-1"]), 101 * S);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].wave.as_str(), t[0].state), ("dev", Baking));
    s.advance(&ready("b", &["dev-1"]), 105 * S);
    assert_eq!(states(&s)[0], ("dev", Baking));
    assert_eq!(s.given("stg-1"), Some("a"));
    // Baked: dev completes and staging starts in the same step.
    let t = s.advance(&ready("b", &["dev-1"]), 106 * S);
    let got: Vec<_> = t.iter().map(|t| (t.wave.as_str(), t.state)).collect();
    assert_eq!(got, vec![("dev", Complete), ("staging", Progressing)]);
    assert_eq!(s.given("stg-1"), Some("b"));
    assert_eq!(s.given("stg-2"), Some("b"));
    assert_eq!(s.given("prod-1"), Some("a"));
    // One staging cluster ready is not enough.
    s.advance(&ready("b", &["dev-1", "stg-1"]), 107 * S);
    assert_eq!(states(&s)[1], ("staging", Progressing));
    assert_eq!(
        s.rollout.as_ref().unwrap().waves[1].reason.as_deref(),
        Some("cluster stg-2: no reconcile pass at this revision yet")
    );
    let all = ["dev-1", "stg-1", "stg-2", "prod-1"];
    s.advance(&ready("b", &all), 108 * S);
    s.advance(&ready("b", &all), 113 * S);
    assert_eq!(s.given("prod-1"), Some("b"));
    s.advance(&ready("b", &all), 114 * S);
    s.advance(&ready("b", &all), 119 * S);
    assert!(s.rollout.as_ref().unwrap().complete());
}

#[test]
fn health_reported_at_another_revision_does_not_count() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 10 * S);
    s.advance(&ready("a", &["dev-1"]), 11 * S);
    assert_eq!(states(&s)[0], ("dev", Progressing));
    assert_eq!(s.given("stg-1"), Some("a"));
}

#[test]
fn only_clusters_whose_objects_change_are_gated() {
    let mut s = settled("a");
    // Only prod's objects change: dev and staging get the revision at once and their
    // waves complete without baking; prod starts right away.
    let t = s.begin(&target("b", 60 * S, "fa", &[("prod-1", "fb")]), 10 * S);
    assert_eq!(
        states(&s),
        vec![
            ("dev", Complete),
            ("staging", Complete),
            ("prod", Progressing)
        ]
    );
    assert!(["dev-1", "stg-1", "stg-2", "prod-1"]
        .iter()
        .all(|c| s.given(c) == Some("b")));
    assert!(t
        .iter()
        .any(|t| t.wave == "dev" && t.description == "no cluster of this wave changes"));
    // A revision that changes no cluster completes at once.
    let mut s = settled("a");
    s.begin(&target("c", 60 * S, "fa", &[]), 10 * S);
    assert!(s.rollout.as_ref().unwrap().complete());
    assert!(s.given("prod-1") == Some("c"));
}

#[test]
fn a_wave_not_ready_within_its_timeout_fails_and_halts_the_later_ones() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    s.advance(&ready("b", &["dev-1"]), S);
    assert_eq!(s.given("stg-1"), Some("b"));
    let mut health = ready("b", &["stg-1"]);
    health.insert(
        "stg-2".into(),
        not_ready(
            "b",
            "data/analytics: Release data/stackgres-operator: Ready=False",
        ),
    );
    s.advance(&health, 30 * S);
    assert_eq!(states(&s)[1], ("staging", Progressing));
    let t = s.advance(&health, 61 * S);
    assert_eq!(
        states(&s),
        vec![("dev", Complete), ("staging", Failed), ("prod", Halted)]
    );
    let halt = s.rollout.as_ref().unwrap().halted.clone().unwrap();
    assert_eq!(halt.wave, "staging");
    assert!(!halt.by_operator);
    assert_eq!(
        halt.reason,
        "not ready within the wave's timeout of 1m: cluster stg-2: data/analytics: Release data/stackgres-operator: Ready=False"
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].description, "wave staging failed");
    // Halted: nothing moves any more, prod keeps the previous revision.
    s.advance(&ready("b", &["dev-1", "stg-1", "stg-2"]), 100 * S);
    assert_eq!(s.given("prod-1"), Some("a"));
    assert_eq!(states(&s)[2], ("prod", Halted));
}

#[test]
fn apply_errors_fail_the_wave_at_once() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    let mut health = BTreeMap::new();
    health.insert(
        "dev-1".to_string(),
        Health {
            revision: "b".into(),
            ready: true,
            reason: None,
            errors: Some("apply Release default/x: 500 InternalError".into()),
        },
    );
    s.advance(&health, S);
    assert_eq!(states(&s)[0], ("dev", Failed));
    assert_eq!(
        s.rollout.as_ref().unwrap().halted.as_ref().unwrap().reason,
        "cluster dev-1: apply Release default/x: 500 InternalError"
    );
    assert_eq!(s.given("stg-1"), Some("a"));
}

#[test]
fn a_claim_that_stops_being_ready_while_baking_restarts_the_bake() {
    let mut s = settled("a");
    s.begin(&target("b", 10 * S, "fb", &[]), 0);
    s.advance(&ready("b", &["dev-1"]), S);
    let mut down = ready("b", &["dev-1"]);
    down.get_mut("dev-1").unwrap().ready = false;
    let t = s.advance(&down, 5 * S);
    assert_eq!((t[0].state, states(&s)[0].1), (Progressing, Progressing));
    s.advance(&ready("b", &["dev-1"]), 6 * S);
    s.advance(&ready("b", &["dev-1"]), 12 * S);
    assert_eq!(states(&s)[0], ("dev", Baking), "bake restarted at 6 s");
    s.advance(&ready("b", &["dev-1"]), 16 * S);
    assert_eq!(states(&s)[0], ("dev", Complete));
}

#[test]
fn a_newer_revision_supersedes_the_rollout_from_the_first_wave() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    s.advance(&ready("b", &["dev-1"]), S);
    assert_eq!(s.given("stg-1"), Some("b"));
    // c reverts staging's objects to a's but changes dev and prod.
    let t = s.begin(
        &target("c", 0, "fc", &[("stg-1", "fa"), ("stg-2", "fa")]),
        2 * S,
    );
    assert!(t
        .iter()
        .any(|t| t.revision == "b" && t.wave == "staging" && t.state == Halted));
    assert_eq!(
        states(&s),
        vec![
            ("dev", Progressing),
            ("staging", Pending),
            ("prod", Pending)
        ]
    );
    // Staging holds b's objects (it was given b), which c changes back: gated again.
    assert_eq!(s.given("stg-1"), Some("b"));
    assert_eq!(s.given("dev-1"), Some("c"));
    assert_eq!(s.given("prod-1"), Some("a"));
    assert_eq!(
        s.revisions(),
        ["a", "b", "c"].iter().map(|r| r.to_string()).collect()
    );
}

#[test]
fn an_operator_halt_stops_the_rollout_until_resumed_and_carries_to_a_new_revision() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    let t = s.halt("investigating", S).unwrap();
    assert_eq!(t.len(), 3);
    assert!(s.halt("again", S).is_err());
    s.advance(&ready("b", &["dev-1"]), 2 * S);
    assert_eq!(s.given("stg-1"), Some("a"));
    assert_eq!(
        s.rollout.as_ref().unwrap().halted.as_ref().unwrap().reason,
        "halted by an operator: investigating"
    );
    // A new revision stays halted.
    s.begin(&target("c", 0, "fc", &[]), 3 * S);
    let h = s.rollout.as_ref().unwrap().halted.clone().unwrap();
    assert!(h.by_operator);
    assert_eq!(s.given("dev-1"), Some("b"));
    s.resume(4 * S).unwrap();
    assert!(s.resume(4 * S).is_err());
    assert_eq!(s.given("dev-1"), Some("c"));
    assert_eq!(states(&s)[0], ("dev", Progressing));
    s.advance(&ready("c", &["dev-1"]), 5 * S);
    assert_eq!(s.given("stg-1"), Some("c"));
}

#[test]
fn resuming_a_failed_wave_retries_it_with_a_fresh_timeout_and_a_failure_does_not_carry() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    s.advance(&BTreeMap::new(), 61 * S);
    assert_eq!(states(&s)[0], ("dev", Failed));
    s.resume(100 * S).unwrap();
    s.advance(&BTreeMap::new(), 150 * S);
    assert_eq!(states(&s)[0], ("dev", Progressing));
    s.advance(&BTreeMap::new(), 161 * S);
    assert_eq!(states(&s)[0], ("dev", Failed));
    s.begin(&target("c", 0, "fc", &[]), 200 * S);
    assert!(s.rollout.as_ref().unwrap().halted.is_none());
    assert_eq!(states(&s)[0], ("dev", Progressing));
}

#[test]
fn a_restart_with_the_saved_state_skips_no_gate_and_re_rolls_nothing() {
    let mut s = settled("a");
    s.begin(&target("b", 10 * S, "fb", &[]), 0);
    s.advance(&ready("b", &["dev-1"]), S);
    // The agent stops while dev bakes; the saved state comes back as it was.
    let json = serde_json::to_string(&s).unwrap();
    let mut back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    // The same revision is served again after the restart: nothing starts over.
    assert!(back
        .begin(&target("b", 10 * S, "fb", &[]), 5 * S)
        .is_empty());
    assert_eq!(states(&back)[0], ("dev", Baking));
    // The wave is judged afresh: no bake completes on reports from before the restart,
    // and the timeout counts from the restart.
    let t = back.restarted(100 * S);
    assert_eq!((t.len(), states(&back)[0]), (1, ("dev", Progressing)));
    back.advance(&BTreeMap::new(), 150 * S);
    assert_eq!(states(&back)[0], ("dev", Progressing));
    assert_eq!(back.given("stg-1"), Some("a"));
    back.advance(&ready("b", &["dev-1"]), 151 * S);
    back.advance(&ready("b", &["dev-1"]), 160 * S);
    assert_eq!(states(&back)[0], ("dev", Baking));
    back.advance(&ready("b", &["dev-1"]), 161 * S);
    assert_eq!(back.given("stg-1"), Some("b"));
    // Nothing to judge again when halted or done.
    let mut done = settled("a");
    assert!(done.restarted(0).is_empty());
}

#[test]
fn the_timeout_counts_from_when_the_wave_last_became_not_ready() {
    let mut s = settled("a");
    // Bake longer than the timeout: a claim that flaps late gets a fresh timeout.
    let mut t = target("b", 100 * S, "fb", &[]);
    t.waves[0].timeout = Duration::from_secs(10);
    s.begin(&t, 0);
    s.advance(&ready("b", &["dev-1"]), S);
    let mut down = ready("b", &["dev-1"]);
    down.get_mut("dev-1").unwrap().ready = false;
    s.advance(&down, 50 * S);
    assert_eq!(states(&s)[0], ("dev", Progressing));
    s.advance(&down, 59 * S);
    assert_eq!(states(&s)[0], ("dev", Progressing));
    s.advance(&down, 60 * S);
    assert_eq!(states(&s)[0], ("dev", Failed));
}

#[test]
fn halt_and_resume_explain_why_they_cannot() {
    let mut s = State::default();
    assert!(s
        .halt("", 0)
        .unwrap_err()
        .to_string()
        .contains("no revision"));
    let mut s = settled("a");
    assert!(s.halt("", 0).unwrap_err().to_string().contains("complete"));
    assert!(s.resume(0).unwrap_err().to_string().contains("not halted"));
}

#[test]
fn a_halt_reason_with_control_characters_or_too_long_is_refused_and_halts_nothing() {
    let mut s = settled("a");
    s.begin(&target("b", 0, "fb", &[]), 0);
    let before = s.clone();
    let forged = "ok\u{1b}[2J\nINFO rollout resumed";
    assert_eq!(
        s.halt(forged, S).unwrap_err().to_string(),
        "reason refused: control character U+001B at character 3: plain text on one line only"
    );
    let long = "x".repeat(MAX_REASON_CHARS + 1);
    assert_eq!(
        s.halt(&long, S).unwrap_err().to_string(),
        format!(
            "reason refused: {} characters, at most {MAX_REASON_CHARS}",
            MAX_REASON_CHARS + 1
        )
    );
    assert_eq!(s, before);
    s.halt(&"x".repeat(MAX_REASON_CHARS), S).unwrap();
}

#[test]
fn targets_come_from_the_fleet_with_an_implicit_last_wave() {
    use crate::reconcile::tests::{files, loaded};
    use crate::testing::{wave, Fleet};
    let fleet = |pin: &str| {
        let settings = Fleet::unnamed()
            .override_pins(&[("env", "dev")], &[("stackgres-operator", pin)])
            .wave(
                wave("dev", &[("env", "dev")])
                    .bake_time("2s")
                    .timeout("30s"),
            );
        loaded(&files(&["c1", "c2"], &[("x", "c1"), ("y", "c2")]).with(&settings))
    };
    let mut a = fleet("1.18.4");
    a.clusters
        .get_mut("c1")
        .unwrap()
        .labels
        .insert("env".into(), "dev".into());
    let mut b = fleet("1.19.0");
    b.clusters.clone_from(&a.clusters);
    let (ta, tb) = (Target::of("a", &a), Target::of("b", &b));
    let names: Vec<_> = ta
        .waves
        .iter()
        .map(|w| (w.name.as_str(), w.clusters.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("dev", vec!["c1".to_string()]),
            (IMPLICIT_WAVE, vec!["c2".to_string()])
        ]
    );
    assert_eq!(ta.waves[0].bake_time, Duration::from_secs(2));
    assert_eq!(ta.waves[0].timeout, Duration::from_secs(30));
    assert_ne!(ta.fingerprints["c1"], tb.fingerprints["c1"]);
    assert_eq!(ta.fingerprints["c2"], tb.fingerprints["c2"]);
}

proptest! {
    /// Whatever the health reports, the clock and operator actions, a cluster of a wave
    /// is given the rollout's revision only once every earlier wave is complete, and a
    /// complete wave had every changed cluster ready at that revision.
    #[test]
    fn no_cluster_gets_the_revision_before_the_earlier_waves_complete(
        steps in proptest::collection::vec((0u64..20_000, proptest::bits::u8::ANY, 0u8..10), 1..40),
        changed in proptest::bits::u8::between(0, 4),
    ) {
        let clusters = ["dev-1", "stg-1", "stg-2", "prod-1"];
        let mut s = settled("a");
        let overrides: Vec<(&str, &str)> = clusters
            .iter()
            .enumerate()
            .filter(|(i, _)| changed & (1 << i) == 0)
            .map(|(_, c)| (*c, "fa"))
            .collect();
        let t = target("b", 3 * S, "fb", &overrides);
        let mut now = 0;
        s.begin(&t, now);
        for (dt, ready_bits, action) in steps {
            now += dt;
            match action {
                0 => { let _ = s.halt("x", now); }
                1 => { let _ = s.resume(now); }
                _ => {
                    let health: BTreeMap<String, Health> = clusters
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.to_string(), Health {
                            revision: if ready_bits & (1 << (i + 4)) == 0 { "b".into() } else { "a".into() },
                            ready: ready_bits & (1 << i) != 0,
                            reason: None,
                            errors: (action == 9).then(|| "boom".to_string()),
                        }))
                        .collect();
                    s.advance(&health, now);
                }
            }
            let r = s.rollout.as_ref().unwrap();
            for (k, def) in t.waves.iter().enumerate() {
                let earlier_complete = r.waves[..k].iter().all(|w| w.state == Complete);
                for c in &def.clusters {
                    let unchanged = t.fingerprints[c] == "fa";
                    if s.given(c) == Some("b") && !unchanged {
                        prop_assert!(earlier_complete, "{c} got b before the waves before {} completed: {r:?}", def.name);
                    }
                    if unchanged {
                        prop_assert_eq!(s.given(c), Some("b"));
                    }
                }
                if r.waves[k].state == Complete && !r.waves[k].clusters.is_empty() {
                    prop_assert!(r.waves[k].ready_since_ms.is_some());
                    let since = r.waves[k].ready_since_ms.unwrap();
                    prop_assert!(r.waves[k].finished_ms.unwrap() - since >= 3 * S);
                }
            }
        }
    }

    /// The agent's tick skips a rollout that does not move with the clock: such a rollout
    /// (complete or halted) stays as it is and says nothing, whatever the health and the
    /// time; one that is in progress does move with the clock.
    #[test]
    fn a_rollout_that_does_not_move_with_the_clock_stays_as_it_is_whatever_the_health(
        halted in proptest::bool::ANY,
        later in 0u64..1_000_000_000,
        ready_bits in proptest::bits::u8::ANY,
        revision_bits in proptest::bits::u8::ANY,
    ) {
        let clusters = ["dev-1", "stg-1", "stg-2", "prod-1"];
        let mut s = settled("a");
        prop_assert!(!s.moves_with_clock());
        if halted {
            s.begin(&target("b", 3 * S, "fb", &[]), 0);
            prop_assert!(s.moves_with_clock());
            s.halt("x", 0).unwrap();
        }
        prop_assert!(!s.moves_with_clock());
        let before = s.clone();
        let health: BTreeMap<String, Health> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), Health {
                revision: if revision_bits & (1 << i) == 0 { "b".into() } else { "a".into() },
                ready: ready_bits & (1 << i) != 0,
                reason: None,
                errors: (ready_bits & (1 << (i + 4)) != 0).then(|| "boom".to_string()),
            }))
            .collect();
        prop_assert!(s.advance(&health, later).is_empty());
        prop_assert_eq!(s, before);
    }
}

#[test]
fn no_rollout_and_a_finished_one_do_not_move_with_the_clock_and_one_in_progress_does() {
    assert!(!State::default().moves_with_clock());
    let mut s = settled("a");
    assert!(!s.moves_with_clock());
    s.begin(&target("b", 5 * S, "fb", &[]), 100 * S);
    assert!(s.moves_with_clock(), "progressing");
    s.advance(&ready("b", &["dev-1"]), 101 * S);
    assert_eq!(states(&s)[0], ("dev", Baking));
    assert!(s.moves_with_clock(), "baking");
    let all = ["dev-1", "stg-1", "stg-2", "prod-1"];
    for now in [106, 107, 112, 113, 118, 119, 125] {
        s.advance(&ready("b", &all), now * S);
    }
    assert!(s.rollout.as_ref().unwrap().complete(), "{s:?}");
    assert!(!s.moves_with_clock(), "complete");
}

/// One wave `prod` of `n` clusters `p00`.., in batches of `max_unavailable`, leaving up to
/// `max_unreachable` behind, each batch baking `batch_bake` and the wave `bake`.
fn one_wave(
    revision: &str,
    n: usize,
    max_unavailable: Option<Share>,
    max_unreachable: Option<Share>,
    batch_bake: u64,
    bake: u64,
) -> Target {
    let clusters: Vec<String> = (0..n).map(|i| format!("p{i:02}")).collect();
    Target {
        revision: revision.into(),
        waves: vec![WaveDef {
            name: "prod".into(),
            bake_time: Duration::from_millis(bake),
            timeout: Duration::from_secs(60),
            clusters: clusters.clone(),
            max_unavailable,
            batch_bake_time: Duration::from_millis(batch_bake),
            max_unreachable,
            require_approval: false,
            ..WaveDef::default()
        }],
        fingerprints: clusters.iter().map(|c| (c.clone(), "f".into())).collect(),
    }
}

fn names(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("p{i:02}")).collect()
}

fn given<'a>(s: &'a State, clusters: &[String]) -> Vec<Option<&'a str>> {
    clusters.iter().map(|c| s.given(c)).collect()
}

fn ready_all(revision: &str, clusters: &[String]) -> BTreeMap<String, Health> {
    let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
    ready(revision, &names)
}

#[test]
fn a_wave_in_batches_gives_the_next_batch_only_once_the_last_is_ready_and_baked() {
    let mut s = State::default();
    s.begin(
        &one_wave("a", 40, Some(Share::Percent(25)), None, 2 * S, 3 * S),
        0,
    );
    let w = &s.rollout.as_ref().unwrap().waves[0];
    assert_eq!(w.batches.len(), 4);
    assert!(w.batches.iter().all(|b| b.len() == 10));
    assert!(given(&s, &names(0, 10)).iter().all(|g| *g == Some("a")));
    assert!(given(&s, &names(10, 40)).iter().all(Option::is_none));

    // Nine of the first ten ready: the second batch waits.
    s.advance(&ready_all("a", &names(0, 9)), S);
    assert!(given(&s, &names(10, 20)).iter().all(Option::is_none));
    // All ten: the batch bakes 2 s, then the second starts.
    s.advance(&ready_all("a", &names(0, 10)), 2 * S);
    assert!(given(&s, &names(10, 20)).iter().all(Option::is_none));
    let t = s.advance(&ready_all("a", &names(0, 10)), 4 * S);
    assert!(given(&s, &names(10, 20)).iter().all(|g| *g == Some("a")));
    assert!(given(&s, &names(20, 40)).iter().all(Option::is_none));
    assert!(
        t.iter()
            .any(|t| t.description.starts_with("batch 2 of 4: applying to p10")),
        "{t:?}"
    );
    // A cluster of an earlier batch no longer ready holds the next batch too.
    let mut health = ready_all("a", &names(1, 20));
    health.insert("p00".into(), not_ready("a", "Release default/x: not ready"));
    s.advance(&health, 5 * S);
    s.advance(&health, 10 * S);
    assert!(given(&s, &names(20, 30)).iter().all(Option::is_none));
    // The rest go batch by batch; the last one bakes the wave's 3 s.
    let all = ready_all("a", &names(0, 40));
    for at in [11, 13, 14, 16, 17, 19] {
        s.advance(&all, at * S);
    }
    assert!(given(&s, &names(0, 40)).iter().all(|g| *g == Some("a")));
    assert_eq!(states(&s), [("prod", Baking)]);
    s.advance(&all, 22 * S);
    assert_eq!(states(&s), [("prod", Complete)]);
}

#[test]
fn batches_are_kept_in_the_state_across_a_restart() {
    let mut s = State::default();
    s.begin(&one_wave("a", 6, Some(Share::Count(2)), None, 0, 0), 0);
    s.advance(&ready_all("a", &names(0, 2)), S);
    let saved = serde_json::to_string(&s).unwrap();
    let mut back: State = serde_json::from_str(&saved).unwrap();
    assert_eq!(back, s);
    back.restarted(2 * S);
    assert_eq!(back.rollout.as_ref().unwrap().waves[0].batch, 1);
    assert!(given(&back, &names(4, 6)).iter().all(Option::is_none));
    // A state saved before batches existed reads as one batch.
    let old = r#"{"clusters":{},"rollout":{"revision":"a","startedMs":0,"waves":[{"name":"prod","state":"pending","bakeMs":0,"timeoutMs":1000,"clusters":{"p00":"f"}}]}}"#;
    let old: State = serde_json::from_str(old).unwrap();
    assert!(old.rollout.unwrap().waves[0].batches.is_empty());
}

#[test]
fn a_wave_completes_without_up_to_max_unreachable_clusters_which_catch_up_later() {
    let mut s = State::default();
    s.begin(
        &one_wave("a", 20, None, Some(Share::Percent(10)), 0, 2 * S),
        0,
    );
    let down: BTreeSet<String> = ["p03".to_string(), "p07".to_string()].into();
    let up: Vec<String> = names(0, 20)
        .into_iter()
        .filter(|c| !down.contains(c))
        .collect();
    s.advance_seeing(&ready_all("a", &up), &down, S);
    s.advance_seeing(&ready_all("a", &up), &down, 3 * S);
    let w = &s.rollout.as_ref().unwrap().waves[0];
    assert_eq!(w.state, Complete, "{w:?}");
    assert_eq!(w.stragglers.keys().collect::<Vec<_>>(), ["p03", "p07"]);
    assert_eq!(
        s.given("p03"),
        Some("a"),
        "a straggler is given the revision too"
    );
    assert!(s.moves_with_clock(), "stragglers bake on the clock");

    // One back and ready: it leaves the list after the wave's bake time.
    let back: BTreeSet<String> = ["p07".to_string()].into();
    let all = ready_all("a", &names(0, 20));
    s.advance_seeing(&all, &back, 4 * S);
    let t = s.advance_seeing(&all, &back, 6 * S);
    let w = &s.rollout.as_ref().unwrap().waves[0];
    assert_eq!(w.stragglers.keys().collect::<Vec<_>>(), ["p07"]);
    assert!(
        t.iter()
            .any(|t| t.description.starts_with("straggler p03 caught up")),
        "{t:?}"
    );
    s.advance_seeing(&all, &BTreeSet::new(), 7 * S);
    s.advance_seeing(&all, &BTreeSet::new(), 9 * S);
    assert!(s.rollout.as_ref().unwrap().waves[0].stragglers.is_empty());
    assert!(!s.moves_with_clock(), "all caught up");
}

#[test]
fn more_unreachable_clusters_than_allowed_hold_the_wave_and_fail_it_at_its_timeout() {
    let mut s = State::default();
    s.begin(&one_wave("a", 20, None, Some(Share::Percent(10)), 0, 0), 0);
    let down: BTreeSet<String> = ["p01", "p02", "p03"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let up: Vec<String> = names(0, 20)
        .into_iter()
        .filter(|c| !down.contains(c))
        .collect();
    s.advance_seeing(&ready_all("a", &up), &down, S);
    let w = &s.rollout.as_ref().unwrap().waves[0];
    assert_eq!(w.state, Progressing);
    let reason = w.reason.clone().unwrap();
    assert!(reason.contains("cluster p01: unreachable"), "{reason}");
    s.advance_seeing(&ready_all("a", &up), &down, 61 * S);
    assert_eq!(states(&s), [("prod", Failed)]);
}

/// [`target`] with staging requiring approval.
fn gated(revision: &str, fp: &str) -> Target {
    let mut t = target(revision, 0, fp, &[]);
    t.waves[1].require_approval = true;
    t
}

#[test]
fn a_wave_that_requires_approval_waits_for_it_and_starts_once_approved() {
    let mut s = State::default();
    s.begin(&gated("a", "fa"), 0);
    let all = ["dev-1", "stg-1", "stg-2", "prod-1"];
    let t = s.advance(&ready("a", &all), S);
    assert_eq!(
        states(&s),
        [
            ("dev", Complete),
            ("staging", AwaitingApproval),
            ("prod", Pending)
        ]
    );
    assert!(t
        .iter()
        .any(|t| t.wave == "staging" && t.state == AwaitingApproval));
    assert_eq!(s.given("stg-1"), None);
    // Waiting is no failure, however long.
    s.advance(&ready("a", &all), 3600 * S);
    assert_eq!(states(&s)[1], ("staging", AwaitingApproval));
    let w = &s.rollout.as_ref().unwrap().waves[1];
    assert_eq!(
        w.reason.as_deref(),
        Some("waiting for approval: psql-fleet rollout approve staging")
    );

    assert!(matches!(
        s.approve("prod", "alice", 3601 * S),
        Err(ControlError::NoApprovalNeeded { .. })
    ));
    assert!(matches!(
        s.approve("qa", "alice", 3601 * S),
        Err(ControlError::UnknownWave { .. })
    ));
    let t = s.approve("staging", "alice", 3601 * S).unwrap();
    assert!(
        t.iter().any(|t| t.description == "approved by alice"),
        "{t:?}"
    );
    assert_eq!(states(&s)[1], ("staging", Progressing));
    assert_eq!(s.given("stg-1"), Some("a"));
    assert!(matches!(
        s.approve("staging", "bob", 3602 * S),
        Err(ControlError::AlreadyApproved { by, .. }) if by == "alice"
    ));
    for at in [3603, 3604] {
        s.advance(&ready("a", &all), at * S);
    }
    assert!(s.rollout.as_ref().unwrap().complete(), "{s:?}");

    // A new revision that changes staging asks again; one that does not, does not.
    s.begin(&gated("b", "fb"), 4000 * S);
    s.advance(&ready("b", &all), 4001 * S);
    assert_eq!(states(&s)[1], ("staging", AwaitingApproval));
    let mut s = State::default();
    s.begin(&gated("a", "fa"), 0);
    s.advance(&ready("a", &all), S);
    s.approve("staging", "alice", 2 * S).unwrap();
    for at in [3, 4, 5] {
        s.advance(&ready("a", &all), at * S);
    }
    let mut unchanged = gated("c", "fa");
    unchanged.fingerprints.insert("dev-1".into(), "fc".into());
    s.begin(&unchanged, 10 * S);
    s.advance(&ready("c", &all), 11 * S);
    assert_eq!(states(&s)[1], ("staging", Complete));
}

#[test]
fn a_later_wave_can_be_approved_ahead_and_an_approval_survives_a_halt() {
    let mut s = State::default();
    let mut t = gated("a", "fa");
    t.waves[2].require_approval = true;
    s.begin(&t, 0);
    s.approve("prod", "carol", 0).unwrap();
    assert_eq!(states(&s)[2], ("prod", Pending));
    s.halt("incident", S).unwrap();
    s.approve("staging", "alice", 2 * S).unwrap();
    s.resume(3 * S).unwrap();
    let all = ["dev-1", "stg-1", "stg-2", "prod-1"];
    for at in [4, 5, 6, 7] {
        s.advance(&ready("a", &all), at * S);
    }
    assert!(s.rollout.as_ref().unwrap().complete(), "{s:?}");
    // Saved and read back, the approvals stay.
    let back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

proptest! {
    /// Walking the health side by side with a wave's clusters finds what a lookup each
    /// finds, whatever the order the wave gives them in (batches keep their own).
    #[test]
    fn each_cluster_is_judged_by_its_own_health(
        given in proptest::collection::vec("[a-d]{1,3}", 0..24),
        reported in proptest::collection::btree_set("[a-d]{1,3}", 0..24),
        sort in any::<bool>(),
    ) {
        let mut given = given;
        if sort {
            given.sort();
            given.dedup();
        }
        let health: BTreeMap<String, Health> = reported
            .into_iter()
            .map(|name| {
                let h = not_ready("r1", &format!("{name} is not ready"));
                (name, h)
            })
            .collect();
        let walked: Vec<(&String, Option<&Health>)> =
            health_of(given.iter().collect(), &health).collect();
        let looked_up: Vec<(&String, Option<&Health>)> =
            given.iter().map(|c| (c, health.get(c))).collect();
        prop_assert_eq!(walked, looked_up);
    }
}
