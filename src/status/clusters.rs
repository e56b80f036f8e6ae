//! The report's clusters, and what is asked of all of them at once kept as each one
//! changes: the counts `/api/v1/status/summary` serves, and the clusters the rollout's
//! tick leaves behind as unreachable. At ten thousand clusters, walking the map for them
//! cost about 2 ms a read (one allocation a cluster, one more for its claims, each a cache
//! miss), and a script polling the summary while the fleet converges, or the tick every
//! 250 ms, read it that often. Every change goes through this type, which takes the
//! cluster's old share of the counts out and puts its new one in.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::summary::{ClaimCounts, ClusterCounts};
use super::ClusterStatus;

/// The clusters by name, read as the map they are ([`Deref`]), changed through the methods
/// below.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterMap {
    map: BTreeMap<String, Arc<ClusterStatus>>,
    tally: Tally,
}

/// What the clusters of the map come to.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tally {
    clusters: ClusterCounts,
    claims: ClaimCounts,
    /// Not reachable, and stamped so ([`ClusterStatus::unreachable_since`]).
    unreachable: BTreeSet<String>,
    /// Neither reconciled yet nor known to be failing: the agent is not ready while any
    /// is.
    waiting: usize,
}

impl ClusterMap {
    /// The clusters and their claims counted.
    pub fn counts(&self) -> (&ClusterCounts, &ClaimCounts) {
        (&self.tally.clusters, &self.tally.claims)
    }

    /// The clusters that cannot be reached now.
    pub fn unreachable(&self) -> &BTreeSet<String> {
        &self.tally.unreachable
    }

    /// How many clusters the agent's readiness still waits for: neither reconciled since
    /// it started nor found unreachable.
    pub fn waiting(&self) -> usize {
        self.tally.waiting
    }

    /// Changes `name`'s status, made (default) if it has none yet; whether it was made.
    /// One lookup for a cluster already there, as every pass's update is.
    pub fn upsert(&mut self, name: &str, f: impl FnOnce(&mut ClusterStatus)) -> bool {
        if let Some(status) = self.map.get_mut(name) {
            self.tally.take(name, status);
            f(Arc::make_mut(status));
            self.tally.add(name, status);
            return false;
        }
        let mut status = ClusterStatus::default();
        f(&mut status);
        self.insert(name.to_string(), Arc::new(status));
        true
    }

    /// Changes `name`'s status, if it has one. `f` is handed the shared status, so that
    /// it copies it ([`Arc::make_mut`]) only to change it: a reader may hold it.
    pub fn change(&mut self, name: &str, f: impl FnOnce(&mut Arc<ClusterStatus>)) {
        let Some(status) = self.map.get_mut(name) else {
            return;
        };
        self.tally.take(name, status);
        f(status);
        self.tally.add(name, status);
    }

    /// Changes every cluster's status, as [`ClusterMap::change`] does one.
    pub fn change_all(&mut self, mut f: impl FnMut(&str, &mut Arc<ClusterStatus>)) {
        for (name, status) in &mut self.map {
            self.tally.take(name, status);
            f(name, status);
            self.tally.add(name, status);
        }
    }

    pub fn insert(&mut self, name: String, status: Arc<ClusterStatus>) {
        self.remove(&name);
        self.tally.add(&name, &status);
        self.map.insert(name, status);
    }

    /// Adds `name` unless it is there already.
    pub fn insert_if_absent(&mut self, name: String, status: Arc<ClusterStatus>) {
        if !self.map.contains_key(&name) {
            self.insert(name, status);
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<ClusterStatus>> {
        let status = self.map.remove(name)?;
        self.tally.take(name, &status);
        Some(status)
    }

    pub fn clear(&mut self) {
        *self = ClusterMap::default();
    }
}

impl Tally {
    fn add(&mut self, name: &str, status: &ClusterStatus) {
        add(&mut self.clusters, &mut self.claims, status, 1);
        if unreachable(status) {
            self.unreachable.insert(name.to_string());
        }
        self.waiting += usize::from(waiting(status));
    }

    /// Takes out what [`Tally::add`] put in for the same status.
    fn take(&mut self, name: &str, status: &ClusterStatus) {
        add(&mut self.clusters, &mut self.claims, status, -1);
        if unreachable(status) {
            self.unreachable.remove(name);
        }
        self.waiting -= usize::from(waiting(status));
    }
}

fn unreachable(status: &ClusterStatus) -> bool {
    !status.reachable && status.unreachable_since.is_some()
}

fn waiting(status: &ClusterStatus) -> bool {
    !(status.reconciled || (!status.reachable && status.last_error.is_some()))
}

/// Adds one cluster's share to the counts (`sign` 1), or takes it out (`sign` -1).
pub(super) fn add(
    clusters: &mut ClusterCounts,
    claims: &mut ClaimCounts,
    cluster: &ClusterStatus,
    sign: isize,
) {
    let step = |n: &mut usize, yes: bool| {
        if yes {
            *n = n.wrapping_add_signed(sign);
        }
    };
    step(&mut clusters.total, true);
    step(&mut clusters.reachable, cluster.reachable);
    step(&mut clusters.reconciled, cluster.reconciled);
    step(&mut clusters.failing, cluster.last_error.is_some());
    step(&mut clusters.leaving, cluster.leaving);
    for claim in &cluster.claims {
        step(&mut claims.total, true);
        step(&mut claims.ready, claim.ready);
        step(
            &mut claims.ready_with_usage,
            claim.ready && claim.usage_present,
        );
        step(&mut claims.drifted, !claim.drift.is_empty());
        step(&mut claims.suspended, claim.suspended);
        step(&mut claims.unknown, claim.unknown_since.is_some());
    }
}

impl Deref for ClusterMap {
    type Target = BTreeMap<String, Arc<ClusterStatus>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a> IntoIterator for &'a ClusterMap {
    type Item = (&'a String, &'a Arc<ClusterStatus>);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Arc<ClusterStatus>>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl FromIterator<(String, Arc<ClusterStatus>)> for ClusterMap {
    fn from_iter<I: IntoIterator<Item = (String, Arc<ClusterStatus>)>>(iter: I) -> Self {
        let mut map = ClusterMap::default();
        for (name, status) in iter {
            map.insert(name, status);
        }
        map
    }
}

impl Serialize for ClusterMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ClusterMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, Arc<ClusterStatus>>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ClaimStatus;

    /// The counts and the unreachable clusters as a walk over the map finds them.
    fn walked(map: &ClusterMap) -> Tally {
        let mut tally = Tally::default();
        for (name, status) in map.iter() {
            tally.add(name, status);
        }
        tally
    }

    fn claim(ready: bool, usage: bool) -> ClaimStatus {
        crate::status::summary::tests::claim("default/app", ready, usage)
    }

    #[test]
    fn the_counts_follow_every_change_as_a_walk_would_find_them() {
        let mut map = ClusterMap::default();
        assert!(map.upsert("one", |s| {
            s.reachable = true;
            s.reconciled = true;
            s.claims = vec![claim(true, true), claim(true, false)];
        }));
        assert!(!map.upsert("one", |s| s.claims[1].usage_present = true));
        map.upsert("two", |s| {
            s.last_error = Some("cluster two: unreachable".into());
            s.unreachable_since = Some("2026-12-06T00:00:00Z".into());
            s.claims = vec![ClaimStatus {
                unknown_since: Some("2026-12-06T00:00:00Z".into()),
                drift: vec!["spec.forProvider.chart.version".into()],
                ..claim(false, true)
            }];
        });
        assert_eq!(map.tally, walked(&map));
        assert_eq!(map.counts().0.total, 2);
        assert_eq!(map.counts().1.ready_with_usage, 2);
        assert_eq!(map.unreachable(), &BTreeSet::from(["two".to_string()]));

        // Reachable again: out of the unreachable set, its claim known again.
        assert_eq!(map.waiting(), 0);
        map.change("two", |s| {
            let s = Arc::make_mut(s);
            s.reachable = true;
            s.unreachable_since = None;
            s.last_error = None;
            s.claims[0].unknown_since = None;
        });
        map.change("absent", |s| Arc::make_mut(s).reachable = true);
        assert_eq!(map.tally, walked(&map));
        assert!(map.unreachable().is_empty());
        assert_eq!(map.counts().0.reachable, 2);
        // Reachable, not reconciled yet: waited for.
        assert_eq!(map.waiting(), 1);

        map.change_all(|_, s| Arc::make_mut(s).leaving = true);
        map.insert("three".into(), Arc::new(ClusterStatus::default()));
        map.insert_if_absent("three".into(), Arc::new(ClusterStatus::default()));
        map.insert("one".into(), Arc::new(ClusterStatus::default()));
        assert_eq!(map.tally, walked(&map));
        assert_eq!(map.counts().0.leaving, 1);
        assert_eq!(map.counts().1.total, 1);

        map.remove("two");
        assert_eq!(map.tally, walked(&map));
        assert_eq!(map.counts().1.total, 0);
        map.clear();
        assert_eq!(map, ClusterMap::default());
    }

    #[test]
    fn a_reader_keeps_the_status_it_read_while_the_map_changes() {
        let mut map = ClusterMap::default();
        map.upsert("one", |s| s.reachable = true);
        let read = map["one"].clone();
        map.change("one", |s| Arc::make_mut(s).reachable = false);
        assert!(read.reachable);
        assert!(!map["one"].reachable);
        assert_eq!(map.counts().0.reachable, 0);
    }

    #[test]
    fn a_report_read_back_counts_what_it_holds() {
        let mut map = ClusterMap::default();
        map.upsert("one", |s| {
            s.reachable = true;
            s.claims = vec![claim(true, true)];
        });
        let json = serde_json::to_string(&map).unwrap();
        assert!(json.starts_with(r#"{"one":{"#), "{json}");
        let back: ClusterMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.counts().1.ready_with_usage, 1);
    }
}
