//! The counters and the pass-duration histogram of every cluster, kept as plain numbers
//! and written as series when scraped. A prometheus `*Vec` child carries a descriptor of
//! its own (name, help, label names, their hashes): the nineteen series of each cluster
//! took about 11 KiB with them, 6% of the agent's memory at a thousand clusters, and
//! building those descriptors was 1.5% of a cold start's CPU.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::text::{Exposition, Family};
use super::ErrorReason;
use fleet_core::reconcile::ManagerKind;

pub const DRIFT_CORRECTIONS: Family = counter(
    "psql_fleet_drift_corrections_total",
    "Objects changed or deleted by hand that the agent re-applied (drift policy correct)",
);
pub const DRIFT_FOUND: Family = counter(
    "psql_fleet_drift_found_total",
    "Drifts found on a cluster (corrected or reported, each once), by who made them: manager kubectl, helm, other, or unknown (a deleted object)",
);
pub const ERRORS: Family = counter(
    "psql_fleet_reconcile_errors_total",
    "Failed reconcile steps on a cluster, by reason (unreachable, timeout, conflict, forbidden, invalid, api_error, kubeconfig, mass_prune)",
);
pub const PRUNES: Family = counter(
    "psql_fleet_prune_deletions_total",
    "Objects the agent deleted from a cluster because no claim in the fleet directory renders them any more",
);
pub const APPLIES: Family = counter(
    "psql_fleet_applies_total",
    "Server-side apply requests the agent sent to a cluster",
);
pub const DURATION: Family = Family {
    name: "psql_fleet_reconcile_duration_seconds",
    help: "Seconds one reconcile pass over a cluster took (plan, applies, deletes)",
    kind: "histogram",
};

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        help,
        kind: "counter",
    }
}

/// The duration histogram's upper bounds (`+Inf` is the count).
pub const DURATION_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One cluster's counts. Its series exist, at 0, from the first count or from
/// `know_cluster`, so that `rate()` over them reads 0 rather than nothing.
#[derive(Default)]
pub struct Counts {
    pub drift_corrections: u64,
    pub drift_found: [u64; ManagerKind::ALL.len()],
    pub prunes: u64,
    pub applies: u64,
    pub errors: [u64; ErrorReason::ALL.len()],
    /// From the first pass on, as a histogram's series appear with its first observation.
    pub passes: Option<Passes>,
}

#[derive(Default)]
pub struct Passes {
    /// Cumulative: passes that took at most each bound.
    buckets: [u64; DURATION_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Passes {
    pub fn observe(&mut self, seconds: f64) {
        for (bound, n) in DURATION_BUCKETS.iter().zip(&mut self.buckets) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Every cluster's counts, hashed by cluster name: each pass changes its cluster's counts
/// several times, and at ten thousand clusters a search of a sorted map compared about
/// fourteen names, each a cache miss. A scrape sorts them once instead.
#[derive(Clone, Default)]
pub struct ClusterCounts {
    by_cluster: Arc<Mutex<HashMap<String, Counts>>>,
}

impl ClusterCounts {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Counts>> {
        // Counts are plain numbers, each change one statement: a poisoned lock holds
        // consistent data.
        self.by_cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the counts of `cluster`, creating them at 0 first.
    pub fn edit(&self, cluster: &str, f: impl FnOnce(&mut Counts)) {
        let mut all = self.lock();
        match all.get_mut(cluster) {
            Some(counts) => f(counts),
            None => f(all.entry(cluster.to_string()).or_default()),
        }
    }

    pub fn forget(&self, cluster: &str) {
        self.lock().remove(cluster);
    }

    /// Every cluster's series, family by family.
    pub fn write(&self, out: &mut Exposition) {
        let all = self.lock();
        let mut all: Vec<(&String, &Counts)> = all.iter().collect();
        all.sort_unstable_by_key(|&(name, _)| name);
        let count = |n: u64| n as f64;
        for (family, value) in [
            (
                DRIFT_CORRECTIONS,
                (|c: &Counts| c.drift_corrections) as fn(&Counts) -> u64,
            ),
            (PRUNES, |c| c.prunes),
            (APPLIES, |c| c.applies),
        ] {
            let mut samples = out.samples(family);
            for &(cluster, c) in &all {
                samples.sample("", &[("cluster", cluster)], count(value(c)));
            }
        }
        let mut found = out.samples(DRIFT_FOUND);
        for &(cluster, c) in &all {
            for (manager, n) in ManagerKind::ALL.iter().zip(c.drift_found) {
                let labels = [("cluster", cluster.as_str()), ("manager", manager.as_str())];
                found.sample("", &labels, count(n));
            }
        }
        let mut errors = out.samples(ERRORS);
        for &(cluster, c) in &all {
            for (reason, n) in ErrorReason::ALL.iter().zip(c.errors) {
                let labels = [("cluster", cluster.as_str()), ("reason", reason.as_str())];
                errors.sample("", &labels, count(n));
            }
        }
        let bounds = DURATION_BUCKETS.map(|b| b.to_string());
        let mut durations = out.samples(DURATION);
        for &(cluster, c) in &all {
            let Some(p) = &c.passes else { continue };
            for (bound, n) in bounds.iter().zip(p.buckets) {
                let labels = [("cluster", cluster.as_str()), ("le", bound.as_str())];
                durations.sample("_bucket", &labels, count(n));
            }
            let at = [("cluster", cluster.as_str())];
            durations.sample("_bucket", &[at[0], ("le", "+Inf")], count(p.count));
            durations.sample("_sum", &at, p.sum);
            durations.sample("_count", &at, count(p.count));
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

    use super::super::text::theirs;
    use super::*;

    fn text(counts: &ClusterCounts) -> String {
        let mut out = Exposition::default();
        counts.write(&mut out);
        out.into_string()
    }

    /// A family's series come in cluster-name order, scrape after scrape, whatever order
    /// the clusters were counted in: a reader comparing two scrapes sees what changed.
    #[test]
    fn series_are_written_in_cluster_order() {
        let counts = ClusterCounts::default();
        let names: Vec<String> = (0..200)
            .map(|i| format!("sim-{:03}", (i * 37) % 200))
            .collect();
        for name in &names {
            counts.edit(name, |c| c.applies += 1);
        }
        let written: Vec<String> = text(&counts)
            .lines()
            .filter(|l| l.starts_with(APPLIES.name))
            .map(String::from)
            .collect();
        let mut sorted = written.clone();
        sorted.sort();
        assert_eq!(written.len(), 200);
        assert_eq!(written, sorted);
    }

    /// The pass histogram reads exactly as prometheus' own `HistogramVec` would.
    #[test]
    fn pass_durations_are_exposed_as_a_prometheus_histogram_would_be() {
        let seconds = [0.005, 0.01, 0.2, 0.2, 3.0, 50.0];
        let ours = ClusterCounts::default();
        let theirs_h = HistogramVec::new(
            HistogramOpts::new(DURATION.name, DURATION.help).buckets(DURATION_BUCKETS.to_vec()),
            &["cluster"],
        )
        .unwrap();
        for s in seconds {
            ours.edit("c1", |c| c.passes.get_or_insert_default().observe(s));
            theirs_h.with_label_values(&["c1"]).observe(s);
        }
        let b = Registry::new();
        b.register(Box::new(theirs_h)).unwrap();
        let ours: Vec<String> = text(&ours)
            .lines()
            .filter(|l| l.contains(DURATION.name))
            .map(String::from)
            .collect();
        let theirs: Vec<String> = theirs(&b).lines().map(String::from).collect();
        assert!(theirs.iter().any(|l| l.contains(r#"le="0.25"} 4"#)));
        assert_eq!(ours, theirs);
    }

    /// The counters read as prometheus' own `IntCounterVec`s would (the order of a
    /// family's series aside, which the format leaves free).
    #[test]
    fn counters_are_exposed_as_prometheus_counters_would_be() {
        let ours = ClusterCounts::default();
        let r = Registry::new();
        let vec = |f: Family, labels: &[&str]| {
            let v = IntCounterVec::new(Opts::new(f.name, f.help), labels).unwrap();
            r.register(Box::new(v.clone())).unwrap();
            v
        };
        let (corrections, prunes, applies) = (
            vec(DRIFT_CORRECTIONS, &["cluster"]),
            vec(PRUNES, &["cluster"]),
            vec(APPLIES, &["cluster"]),
        );
        let (found, errors) = (
            vec(DRIFT_FOUND, &["cluster", "manager"]),
            vec(ERRORS, &["cluster", "reason"]),
        );
        for (cluster, n) in [("c2", 3u64), ("c1", 0)] {
            ours.edit(cluster, |c| {
                c.drift_corrections = n;
                c.prunes = n + 1;
                c.applies = n + 2;
                c.drift_found[1] = n;
                c.errors[2] = n + 5;
            });
            corrections.with_label_values(&[cluster]).inc_by(n);
            prunes.with_label_values(&[cluster]).inc_by(n + 1);
            applies.with_label_values(&[cluster]).inc_by(n + 2);
            for (i, manager) in ManagerKind::ALL.iter().enumerate() {
                let by = if i == 1 { n } else { 0 };
                found
                    .with_label_values(&[cluster, manager.as_str()])
                    .inc_by(by);
            }
            for (i, reason) in ErrorReason::ALL.iter().enumerate() {
                let by = if i == 2 { n + 5 } else { 0 };
                errors
                    .with_label_values(&[cluster, reason.as_str()])
                    .inc_by(by);
            }
        }
        let sorted = |text: String| {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            lines.sort();
            lines
        };
        let ours = sorted(text(&ours));
        assert!(ours.contains(&r#"psql_fleet_prune_deletions_total{cluster="c2"} 4"#.into()));
        assert_eq!(ours, sorted(theirs(&r)));
    }

    #[test]
    fn a_forgotten_cluster_has_no_series() {
        let counts = ClusterCounts::default();
        assert_eq!(text(&counts), "", "no cluster, no family");
        counts.edit("c1", |c| c.applies += 2);
        counts.edit("c2", |_| {});
        assert!(text(&counts).contains(r#"psql_fleet_applies_total{cluster="c1"} 2"#));
        counts.forget("c1");
        let after = text(&counts);
        assert!(!after.contains(r#"cluster="c1""#), "{after}");
        assert!(after.contains(r#"psql_fleet_applies_total{cluster="c2"} 0"#));
    }
}
