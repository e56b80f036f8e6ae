//! Reading the simulator's audit log (every mutating request it served) and its stores:
//! what the agent wrote, deleted, and in which order.

use std::collections::BTreeMap;

use kube_sim::audit::AuditEntry;
use kube_sim::SimHandle;

pub const RELEASES: &str = "releases.helm.m.crossplane.io";
pub const USAGES: &str = "usages.protection.crossplane.io";
pub const EVENTS: &str = "events.events.k8s.io";

/// Audit entries that write Releases or Usages (what psql-fleet owns), leaving out
/// Events and the tests' own namespaces.
/// The Release writes psql-fleet made that the simulator accepted, in order.
pub fn agent_release_writes(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    entries
        .iter()
        .filter(|e| {
            e.resource == RELEASES
                && e.subresource.is_none()
                && e.field_manager.as_deref() == Some("psql-fleet")
                && e.code < 300
        })
        .collect()
}

pub fn object_writes(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    entries
        .iter()
        .filter(|e| e.resource == RELEASES || e.resource == USAGES)
        .collect()
}

/// `verb resource namespace/name` for each entry: what the order assertions compare.
pub fn describe(entries: &[&AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e.verb,
                e.resource,
                e.namespace.as_deref().unwrap_or(""),
                e.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// The deletions of Releases and Usages among `entries`, described.
pub fn deletes(entries: &[AuditEntry]) -> Vec<String> {
    describe(&object_writes(entries))
        .into_iter()
        .filter(|w| w.starts_with("delete "))
        .collect()
}

/// The one safe order of a claim's deletions in namespace `ns`: Atlas, the Usage that
/// protects StackGres from it, then StackGres.
pub fn safe_order(ns: &str) -> Vec<String> {
    vec![
        format!("delete {RELEASES} {ns}/atlas-operator"),
        format!("delete {USAGES} {ns}/{ns}-delete-atlas-operator-before-stackgres-operator"),
        format!("delete {RELEASES} {ns}/stackgres-operator"),
    ]
}

/// Every write in `after` succeeded (StackGres was not refused by its Usage, so it was
/// deleted only once the Usage had gone), and the only deletions are the claim's in `ns`,
/// in the safe order.
pub fn assert_pruned_in_safe_order(after: &[AuditEntry], ns: &str) {
    assert!(after.iter().all(|e| e.code < 300), "{after:?}");
    assert_eq!(deletes(after), safe_order(ns));
}

/// The deletions among `entries` that the simulator accepted (2xx).
pub fn accepted_deletions(entries: Vec<AuditEntry>) -> Vec<AuditEntry> {
    entries
        .into_iter()
        .filter(|e| e.verb.starts_with("delete") && e.code < 300)
        .collect()
}

/// Accepted mutating requests per (cluster, verb, object name), to compare audit logs.
pub fn writes_by_object(entries: &[AuditEntry]) -> BTreeMap<(String, String, String), usize> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.code < 300) {
        *out.entry((
            e.cluster.clone(),
            e.verb.clone(),
            e.name.clone().unwrap_or_default(),
        ))
        .or_default() += 1;
    }
    out
}

/// `namespace/name` of the Releases and Usages on a simulated cluster, read from its store.
pub fn live_objects(sim: &SimHandle, cluster: &str) -> Vec<String> {
    let s = &sim.sim;
    let Some(state) = s.slot(cluster).and_then(|slot| s.existing_state(slot)) else {
        return Vec::new();
    };
    let kinds = [
        s.shared.find("helm.m.crossplane.io", "v1beta1", "releases"),
        s.shared
            .find("protection.crossplane.io", "v1beta1", "usages"),
    ];
    let store = state.store();
    kinds
        .into_iter()
        .flatten()
        .flat_map(|res| {
            store
                .list(res, None, None)
                .map(|(k, _)| format!("{}/{}", k.namespace, k.name))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The chart version of Release `release` on `cluster`, as the simulator stores it; `None`
/// when there is no such Release. There must be at most one, in any namespace.
pub fn release_version(sim: &SimHandle, cluster: &str, release: &str) -> Option<String> {
    release_version_in(sim, cluster, None, release)
}

/// [`release_version`] in `namespace` only, where another claim may hold a Release of the
/// same name in another namespace (while it is pruned, say).
pub fn release_version_in(
    sim: &SimHandle,
    cluster: &str,
    namespace: Option<&str>,
    release: &str,
) -> Option<String> {
    let s = &sim.sim;
    let state = s.slot(cluster).and_then(|slot| s.existing_state(slot))?;
    let res = s
        .shared
        .find("helm.m.crossplane.io", "v1beta1", "releases")?;
    let store = state.store();
    let versions: Vec<String> = store
        .list(res, namespace, None)
        .filter(|(k, _)| k.name == release)
        .filter_map(|(_, v)| {
            v["spec"]["forProvider"]["chart"]["version"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(versions.len() <= 1, "{cluster}: {release} {versions:?}");
    versions.into_iter().next()
}
