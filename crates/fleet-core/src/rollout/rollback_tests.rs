//! Rollback decisions: a failed wave with `rollback: auto`, and `rollout undo`.

use std::collections::BTreeMap;

use super::rollback::is_rollback;
use super::tests::{ready, settled, states, target, S};
use super::*;
use WaveState::*;

/// Revision `b` over [`settled`]`("a")` (every cluster's fingerprint `fb`), a 60 s
/// timeout, staging with `rollback` and a 10 s bake; dev is complete at 1 s and staging
/// given `b`.
fn staging_given(rollback: Rollback) -> State {
    let mut s = settled("a");
    let mut t = target("b", 0, "fb", &[]);
    t.waves[1].rollback = rollback;
    t.waves[1].bake_time = std::time::Duration::from_secs(10);
    s.begin(&t, 0);
    s.advance(&ready("b", &["dev-1"]), S);
    assert_eq!(states(&s)[1], ("staging", Progressing));
    assert_eq!(s.given("stg-1"), Some("b"));
    s
}

fn given_of(s: &State, cluster: &str) -> Option<Given> {
    s.clusters.get(cluster).cloned()
}

fn a(fingerprint: &str) -> Option<Given> {
    Some(Given {
        revision: "a".into(),
        fingerprint: fingerprint.into(),
    })
}

fn halt_reason(s: &State) -> String {
    s.rollout
        .as_ref()
        .unwrap()
        .halted
        .as_ref()
        .unwrap()
        .reason
        .clone()
}

#[test]
fn a_failed_wave_with_rollback_auto_gives_its_clusters_their_previous_revision() {
    let mut s = staging_given(Rollback::Auto);
    // The revision they ran before stays kept while they might go back to it.
    assert!(s.revisions().contains("a"));
    let t = s.advance(&ready("b", &["dev-1", "stg-1"]), 61 * S);
    assert_eq!(
        states(&s),
        vec![("dev", Complete), ("staging", Failed), ("prod", Halted)]
    );
    assert_eq!(given_of(&s, "stg-1"), a("fa"));
    assert_eq!(given_of(&s, "stg-2"), a("fa"));
    // The wave before keeps the revision; the one after was never given it.
    assert_eq!(s.given("dev-1"), Some("b"));
    assert_eq!(s.given("prod-1"), Some("a"));
    let reason = halt_reason(&s);
    assert!(
        reason.starts_with("rolled back 2 clusters to a; the wave failed: not ready within the wave's timeout of 1m: cluster stg-2"),
        "{reason}"
    );
    let w = &s.rollout.as_ref().unwrap().waves[1];
    assert_eq!(w.reason.as_deref(), Some(reason.as_str()));
    let done = w.rolled_back.clone().unwrap();
    assert_eq!(done.clusters, vec!["stg-1", "stg-2"]);
    assert_eq!((done.by.as_str(), done.at_ms), ("auto", 61 * S));
    // The last word on the wave, which its commit status keeps, says it went back.
    let last = t.iter().rev().find(|t| t.wave == "staging").unwrap();
    assert_eq!(
        (last.state, last.description.as_str()),
        (Failed, reason.as_str())
    );
    assert!(is_rollback(last));
    assert!(t
        .iter()
        .filter(|t| t.wave != "staging")
        .all(|t| !is_rollback(t)));
    // Halted: nothing more moves, the clusters stay on `a`.
    s.advance(&ready("b", &["dev-1", "stg-1", "stg-2"]), 100 * S);
    assert_eq!(s.given("stg-1"), Some("a"));
    assert!(s.revisions().contains("a") && s.revisions().contains("b"));
}

#[test]
fn a_failed_wave_without_rollback_keeps_the_failed_revision() {
    let mut s = staging_given(Rollback::None);
    let t = s.advance(&ready("b", &["dev-1", "stg-1"]), 61 * S);
    // A failure without a rollback is no rollback for the pull request either.
    assert!(t.iter().any(|t| t.state == Failed) && !t.iter().any(is_rollback));
    assert_eq!(states(&s)[1], ("staging", Failed));
    assert_eq!(s.given("stg-1"), Some("b"));
    assert_eq!(s.given("stg-2"), Some("b"));
    assert!(!halt_reason(&s).contains("rolled back"));
    assert!(s.rollout.as_ref().unwrap().waves[1].rolled_back.is_none());
}

#[test]
fn apply_errors_with_rollback_auto_roll_back_at_once() {
    let mut s = staging_given(Rollback::Auto);
    let mut health = ready("b", &["dev-1", "stg-1"]);
    health.insert(
        "stg-2".into(),
        Health {
            revision: "b".into(),
            ready: false,
            reason: None,
            errors: Some("apply Release default/x: 500 InternalError".into()),
        },
    );
    s.advance(&health, 2 * S);
    assert_eq!(states(&s)[1], ("staging", Failed));
    assert_eq!(s.given("stg-2"), Some("a"));
    assert!(halt_reason(&s).ends_with("cluster stg-2: apply Release default/x: 500 InternalError"));
}

#[test]
fn only_the_batches_given_the_revision_go_back() {
    let mut s = settled("a");
    let mut t = target("b", 0, "fb", &[]);
    t.waves[1].rollback = Rollback::Auto;
    t.waves[1].max_unavailable = Some(crate::model::share::Share::Count(1));
    s.begin(&t, 0);
    s.advance(&ready("b", &["dev-1"]), S);
    assert_eq!((s.given("stg-1"), s.given("stg-2")), (Some("b"), Some("a")));
    s.advance(&ready("b", &["dev-1"]), 62 * S);
    assert_eq!(states(&s)[1], ("staging", Failed));
    let done = s.rollout.as_ref().unwrap().waves[1]
        .rolled_back
        .clone()
        .unwrap();
    assert_eq!(done.clusters, vec!["stg-1"]);
    assert_eq!(given_of(&s, "stg-1"), a("fa"));
    assert_eq!(given_of(&s, "stg-2"), a("fa"));
    assert!(halt_reason(&s).starts_with("rolled back 1 cluster to a;"));
}

#[test]
fn a_cluster_new_in_the_failed_revision_is_given_nothing_and_left_as_it_is() {
    let mut s = settled("a");
    s.clusters.remove("stg-2");
    let mut t = target("b", 0, "fb", &[]);
    t.waves[1].rollback = Rollback::Auto;
    s.begin(&t, 0);
    s.advance(&ready("b", &["dev-1"]), S);
    assert_eq!(s.given("stg-2"), Some("b"));
    s.advance(&ready("b", &["dev-1", "stg-1"]), 61 * S);
    assert_eq!(s.given("stg-1"), Some("a"));
    assert_eq!(s.given("stg-2"), None);
    let done = s.rollout.as_ref().unwrap().waves[1]
        .rolled_back
        .clone()
        .unwrap();
    assert_eq!(
        (done.clusters, done.left),
        (vec!["stg-1".to_string()], vec!["stg-2".to_string()])
    );
    assert!(
        halt_reason(&s).starts_with(
            "rolled back 1 cluster to a (1 new in this revision left as it is: stg-2);"
        ),
        "{}",
        halt_reason(&s)
    );
}

#[test]
fn undo_gives_a_baking_wave_back_its_previous_revision_and_halts() {
    let mut s = staging_given(Rollback::None);
    s.advance(&ready("b", &["dev-1", "stg-1", "stg-2"]), 2 * S);
    assert_eq!(states(&s)[1], ("staging", Baking));
    let t = s.undo(None, "ops", "error rate up", 3 * S).unwrap();
    assert_eq!(
        states(&s),
        vec![("dev", Complete), ("staging", Halted), ("prod", Halted)]
    );
    assert_eq!(given_of(&s, "stg-1"), a("fa"));
    assert_eq!(s.given("dev-1"), Some("b"));
    assert_eq!(s.given("prod-1"), Some("a"));
    let h = s.rollout.as_ref().unwrap().halted.clone().unwrap();
    assert_eq!(h.wave, "staging");
    assert_eq!(
        h.reason,
        "rolled back 2 clusters to a by an operator: error rate up"
    );
    assert_eq!(t[0].description, h.reason);
    assert_eq!(
        s.rollout.as_ref().unwrap().waves[1]
            .rolled_back
            .as_ref()
            .unwrap()
            .by,
        "ops"
    );
    // Twice is refused: there is nothing left to give back.
    let e = s.undo(Some("staging"), "ops", "", 4 * S).unwrap_err();
    assert!(e.to_string().contains("nothing to undo"), "{e}");
}

#[test]
fn resume_after_a_rollback_retries_the_revision_from_the_wave_rolled_back() {
    let mut s = staging_given(Rollback::Auto);
    s.advance(&ready("b", &["dev-1", "stg-1"]), 61 * S);
    assert_eq!(s.given("stg-1"), Some("a"));
    s.resume(100 * S).unwrap();
    assert_eq!(states(&s)[1], ("staging", Progressing));
    assert_eq!(s.given("stg-1"), Some("b"));
    assert!(s.rollout.as_ref().unwrap().waves[1].rolled_back.is_none());
    // And a second failure goes back to the same place.
    s.advance(&BTreeMap::new(), 161 * S);
    assert_eq!(given_of(&s, "stg-1"), a("fa"));
}

#[test]
fn undo_names_a_wave_and_says_why_it_cannot() {
    let mut s = staging_given(Rollback::None);
    let e = s
        .undo(Some("prod"), "ops", "", 2 * S)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wave prod has given its clusters nothing to undo"),
        "{e}"
    );
    let e = s
        .undo(Some("qa"), "ops", "", 2 * S)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no wave qa"), "{e}");
    assert!(s.undo(None, "ops", "bad\u{1b}[2J", 2 * S).is_err());
    assert_eq!(states(&s)[1], ("staging", Progressing));
    // A wave that completed can be undone too; its later waves stay where they are.
    s.undo(Some("dev"), "ops", "", 2 * S).unwrap();
    assert_eq!(s.given("dev-1"), Some("a"));
    assert_eq!(s.given("stg-1"), Some("b"));
    assert_eq!(states(&s)[0], ("dev", Halted));
    let e = State::default().undo(None, "ops", "", 0).unwrap_err();
    assert!(e.to_string().contains("no rollout to undo"), "{e}");
}

#[test]
fn undo_of_a_failed_wave_keeps_the_failure_in_the_reason() {
    let mut s = staging_given(Rollback::None);
    s.advance(&ready("b", &["dev-1", "stg-1"]), 61 * S);
    s.undo(None, "ops", "", 70 * S).unwrap();
    assert_eq!(s.given("stg-2"), Some("a"));
    let reason = halt_reason(&s);
    assert!(
        reason.starts_with(
            "rolled back 2 clusters to a by an operator; halted before: not ready within"
        ),
        "{reason}"
    );
    // Not an operator's halt: a fix pushed next rolls out.
    s.begin(&target("c", 0, "fc", &[]), 80 * S);
    assert!(s.rollout.as_ref().unwrap().halted.is_none());
}

#[test]
fn the_previous_revision_survives_a_save_and_load() {
    let s = staging_given(Rollback::Auto);
    let text = serde_json::to_string(&s).unwrap();
    assert!(text.contains("\"previous\""), "{text}");
    let back: State = serde_json::from_str(&text).unwrap();
    assert_eq!(back, s);
    let mut back = back;
    back.advance(&BTreeMap::new(), 61 * S);
    assert_eq!(back.given("stg-1"), Some("a"));
}
