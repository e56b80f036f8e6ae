//! Requests served, counted by verb the way the API server's `apiserver_request_total`
//! labels them (get, list, watch, create, update, patch, apply, delete, deletecollection;
//! `discovery` for version, health, discovery and OpenAPI documents), so a benchmark can
//! tell reads from writes; the audit log only holds the writes. Read through the admin API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub const VERBS: [&str; 11] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "apply",
    "delete",
    "deletecollection",
    "discovery",
    "other",
];

/// The verbs that change something: `create` to `deletecollection` in [`VERBS`].
pub const WRITE_VERBS: &[&str] = VERBS.split_at(3).1.split_at(6).0;

/// One counter per verb, shared by every cluster.
#[derive(Default)]
pub struct RequestCounts {
    counts: [AtomicU64; VERBS.len()],
}

impl RequestCounts {
    pub fn add(&self, verb: &str) {
        let i = VERBS
            .iter()
            .position(|v| *v == verb)
            .unwrap_or(VERBS.len() - 1);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        VERBS
            .iter()
            .zip(&self.counts)
            .map(|(v, c)| (*v, c.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Counts one request when dropped, so every return path of the router is counted once;
/// the router refines `verb` as it learns what the request is.
pub struct Counted<'a> {
    counts: &'a RequestCounts,
    pub verb: &'static str,
}

impl<'a> Counted<'a> {
    pub fn new(counts: &'a RequestCounts, verb: &'static str) -> Self {
        Self { counts, verb }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.counts.add(self.verb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_counted_once_under_its_final_verb() {
        let counts = RequestCounts::default();
        {
            let mut c = Counted::new(&counts, "discovery");
            c.verb = "watch";
        }
        drop(Counted::new(&counts, "discovery"));
        counts.add("no-such-verb");
        let s = counts.snapshot();
        assert_eq!(s["watch"], 1);
        assert_eq!(s["discovery"], 1);
        assert_eq!(s["other"], 1);
        assert_eq!(s.values().sum::<u64>(), 3);
        assert_eq!(WRITE_VERBS.first(), Some(&"create"));
        assert_eq!(WRITE_VERBS.last(), Some(&"deletecollection"));
    }
}
