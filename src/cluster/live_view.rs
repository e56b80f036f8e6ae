//! A cluster's objects as its two watches (Releases and Usages carrying the fleet's
//! inventory label) say they are: built from watch events without I/O, and synced once
//! both initial lists are in. It also keeps the last plan made from it while nothing in it
//! changed, so that a resync over a settled cluster need not render and diff again.

use std::collections::{BTreeMap, BTreeSet};

use kube::runtime::watcher::Event;
use litemap::LiteMap;

use super::Assignment;
use fleet_core::reconcile::{ClusterPlan, LiveObject, LiveState};
use fleet_core::render::{ObjectKind, ObjectRef};

pub struct LiveView {
    pub live: LiveState,
    /// Each kind's initial list while it is coming in.
    init: BTreeMap<ObjectKind, LiveState>,
    synced: BTreeSet<ObjectKind>,
    /// How many kinds are watched: both, or only the Releases on a cluster without Usages.
    watched: usize,
    settled: Option<Settled>,
}

/// A plan that had nothing to carry out, and the assignment it was made for. Planning is a
/// pure function of the assignment, this view and the objects seen (which change only
/// with the view), so until one of them changes, planning again would give the same plan:
/// at a thousand idle clusters, rendering and diffing it again was most of the agent's CPU.
struct Settled {
    assignment: Assignment,
    plan: ClusterPlan,
}

impl Default for LiveView {
    fn default() -> LiveView {
        LiveView::watching(2)
    }
}

impl LiveView {
    pub fn watching(kinds: usize) -> LiveView {
        LiveView {
            live: LiveState::new(),
            init: BTreeMap::new(),
            synced: BTreeSet::new(),
            watched: kinds,
            settled: None,
        }
    }

    /// The plan kept by [`LiveView::settle`] for `assignment`, if nothing changed since.
    pub fn take_settled(&mut self, assignment: &Assignment) -> Option<ClusterPlan> {
        self.settled
            .take()
            .filter(|s| s.assignment == *assignment)
            .map(|s| s.plan)
    }

    /// Keeps a plan made from this view for `assignment`, when it has nothing to carry out
    /// (carrying out actions changes the view, and a failed one must be tried again).
    pub fn settle(&mut self, assignment: &Assignment, plan: ClusterPlan) {
        if plan.actions.is_empty() {
            self.settled = Some(Settled {
                assignment: assignment.clone(),
                plan,
            });
        }
    }

    /// What the server answered to a write, until the watch says otherwise.
    pub fn served(&mut self, object: LiveObject) {
        self.settled = None;
        self.live.insert(object);
    }

    /// An object this agent deleted.
    pub fn deleted(&mut self, at: &ObjectRef) {
        self.settled = None;
        self.live.remove(at);
    }

    /// Takes one watch event; every object found live is added to `seen`, so that its
    /// later absence reads as a deletion by hand. Says whether the view changed: a watch
    /// repeating a version the view holds already (the echo of this agent's own write,
    /// whose answer was taken as [`LiveView::served`]) changes nothing, and needs no pass.
    pub fn handle(
        &mut self,
        kind: ObjectKind,
        event: Event<LiveObject>,
        seen: &mut LiteMap<ObjectRef, ()>,
    ) -> bool {
        if let Event::Apply(o) = &event {
            if self.holds(o) {
                seen.insert(o.object_ref.clone(), ());
                return false;
            }
        }
        self.settled = None;
        match event {
            Event::Init => {
                self.init.insert(kind, LiveState::new());
            }
            Event::InitApply(l) => {
                self.init.entry(kind).or_default().insert(l);
            }
            Event::InitDone => {
                let fresh = self.init.remove(&kind).unwrap_or_default();
                self.live.retain(|l| l.object_ref.kind != kind);
                seen.extend(
                    fresh
                        .values()
                        .filter(|l| !l.terminating())
                        .map(|l| (l.object_ref.clone(), ())),
                );
                self.live.extend(fresh);
                self.synced.insert(kind);
            }
            Event::Apply(l) => {
                // Only a live object counts as seen: the updates of one being deleted
                // (finalizers going) must not mark an object the agent pruned itself, or
                // its return (a Usage whose gate opens again) would look like drift.
                if !l.terminating() {
                    seen.insert(l.object_ref.clone(), ());
                }
                self.live.insert(l);
            }
            Event::Delete(l) => {
                self.live.remove(&l.object_ref);
            }
        }
        true
    }

    /// Whether the view holds `object` at the version served (the same resourceVersion is
    /// the same object), not terminating.
    fn holds(&self, object: &LiveObject) -> bool {
        let Some(version) = object.resource_version() else {
            return false;
        };
        self.live
            .get(&object.object_ref)
            .is_some_and(|held| held.resource_version() == Some(version) && !held.terminating())
    }

    /// Whether both initial lists are in: before that, a missing object may only not have
    /// been listed yet.
    pub fn synced(&self) -> bool {
        self.watched > 0 && self.synced.len() == self.watched
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn object(kind: ObjectKind, name: &str, terminating: bool) -> LiveObject {
        let mut metadata = json!({"name": name, "namespace": "default"});
        if terminating {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        LiveObject::from_json(json!({"kind": kind.as_str(), "metadata": metadata})).unwrap()
    }

    fn at(kind: ObjectKind, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            name: name.into(),
            namespace: "default".into(),
        }
    }

    fn listed(
        view: &mut LiveView,
        seen: &mut LiteMap<ObjectRef, ()>,
        kind: ObjectKind,
        names: &[&str],
    ) {
        view.handle(kind, Event::Init, seen);
        for name in names {
            view.handle(kind, Event::InitApply(object(kind, name, false)), seen);
        }
        view.handle(kind, Event::InitDone, seen);
    }

    #[test]
    fn the_view_is_synced_once_both_initial_lists_are_in() {
        let (mut view, mut seen) = (LiveView::default(), LiteMap::new());
        listed(&mut view, &mut seen, ObjectKind::Release, &["a"]);
        assert!(!view.synced(), "the Usages are not listed yet");
        listed(&mut view, &mut seen, ObjectKind::Usage, &[]);
        assert!(view.synced());
        assert!(view.live.contains_key(&at(ObjectKind::Release, "a")));
        assert!(seen.contains_key(&at(ObjectKind::Release, "a")));
    }

    #[test]
    fn a_relist_replaces_what_the_view_held_of_that_kind_only() {
        let (mut view, mut seen) = (LiveView::default(), LiteMap::new());
        listed(&mut view, &mut seen, ObjectKind::Release, &["a", "b"]);
        listed(&mut view, &mut seen, ObjectKind::Usage, &["u"]);
        listed(&mut view, &mut seen, ObjectKind::Release, &["b"]);
        assert!(!view.live.contains_key(&at(ObjectKind::Release, "a")));
        assert!(view.live.contains_key(&at(ObjectKind::Release, "b")));
        assert!(view.live.contains_key(&at(ObjectKind::Usage, "u")));
        // Seen stays seen: "a" gone after being seen is what a deletion by hand looks like.
        assert!(seen.contains_key(&at(ObjectKind::Release, "a")));
    }

    #[test]
    fn an_object_being_deleted_is_in_the_view_but_not_marked_seen() {
        let (mut view, mut seen) = (LiveView::default(), LiteMap::new());
        view.handle(
            ObjectKind::Usage,
            Event::Apply(object(ObjectKind::Usage, "u", true)),
            &mut seen,
        );
        assert!(view
            .live
            .get(&at(ObjectKind::Usage, "u"))
            .is_some_and(|l| l.terminating()));
        assert!(seen.is_empty());
        view.handle(
            ObjectKind::Usage,
            Event::Delete(object(ObjectKind::Usage, "u", true)),
            &mut seen,
        );
        assert!(view.live.is_empty());
    }

    fn versioned(name: &str, version: &str) -> LiveObject {
        let mut o = object(ObjectKind::Release, name, false);
        o.edit(|j| j["metadata"]["resourceVersion"] = json!(version));
        o
    }

    #[test]
    fn the_echo_of_a_write_changes_nothing_but_a_new_version_does() {
        let (mut view, mut seen) = (LiveView::default(), LiteMap::new());
        listed(&mut view, &mut seen, ObjectKind::Release, &[]);
        listed(&mut view, &mut seen, ObjectKind::Usage, &[]);
        view.served(versioned("a", "7"));
        let echo = Event::Apply(versioned("a", "7"));
        assert!(!view.handle(ObjectKind::Release, echo, &mut seen));
        assert!(
            seen.contains_key(&at(ObjectKind::Release, "a")),
            "an echo still marks the object seen"
        );
        let edited = Event::Apply(versioned("a", "8"));
        assert!(view.handle(ObjectKind::Release, edited, &mut seen));
        let held = view.live.get(&at(ObjectKind::Release, "a")).unwrap();
        assert_eq!(held.resource_version(), Some("8"));
        let elsewhere = Event::Apply(versioned("b", "8"));
        assert!(view.handle(ObjectKind::Release, elsewhere, &mut seen));
    }
}
