//! Discovery documents (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`)
//! in the legacy (unaggregated) form; clients that ask for aggregated discovery fall back
//! to it when the response's content type says so.

use serde_json::{json, Value};

use super::cluster::Shared;
use super::crds::ResourceType;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-psql-fleet-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// The checks a health endpoint lists with `?verbose`, as kube-apiserver names them (a
/// subset of its post-start hooks; the simulator has no etcd, so every check passes).
const HEALTH_CHECKS: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/start-apiextensions-informers",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
];

/// The body of `/healthz`, `/livez` or `/readyz` (`check`): `ok`, or with `?verbose` one
/// line per check and `<check> check passed`, as kube-apiserver answers.
pub fn health(check: &str, query: Option<&str>) -> String {
    let verbose = query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "verbose" && v != "false")
    });
    if !verbose {
        return "ok".into();
    }
    let mut lines: Vec<String> = HEALTH_CHECKS.iter().map(|c| format!("[+]{c} ok")).collect();
    if check == "readyz" {
        lines.insert(3, "[+]etcd-readiness ok".into());
        lines.insert(4, "[+]informer-sync ok".into());
        lines.push("[+]shutdown ok".into());
    }
    lines.push(format!("{check} check passed"));
    lines.join("\n") + "\n"
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
    })
}

/// The served resource types: `served` is by registry index (a cluster without a CRD
/// does not serve its kind).
fn served_types<'a>(sh: &'a Shared, served: &'a [bool]) -> impl Iterator<Item = &'a ResourceType> {
    sh.registry
        .iter()
        .enumerate()
        .filter(|(i, _)| served.get(*i).copied().unwrap_or(true))
        .map(|(_, r)| r)
}

fn groups(sh: &Shared, served: &[bool]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in served_types(sh, served).filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
            out.push((r.group.clone(), r.version.clone()));
        }
    }
    out
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

pub fn group_list(sh: &Shared, served: &[bool]) -> Value {
    let groups: Vec<Value> = groups(sh, served)
        .iter()
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(sh: &Shared, served: &[bool], group: &str) -> Option<Value> {
    let (g, v) = groups(sh, served).into_iter().find(|(g, _)| g == group)?;
    let mut doc = group_entry(&g, &v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn resource_list(sh: &Shared, served: &[bool], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in served_types(sh, served).filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if r.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn health_is_ok_or_every_check_with_verbose() {
        assert_eq!(super::health("livez", None), "ok");
        assert_eq!(super::health("livez", Some("verbose=false")), "ok");
        let readyz = super::health("readyz", Some("verbose"));
        assert!(readyz.starts_with("[+]ping ok\n"), "{readyz}");
        assert!(readyz.contains("[+]etcd-readiness ok\n"), "{readyz}");
        assert!(readyz.ends_with("readyz check passed\n"), "{readyz}");
        assert!(super::health("healthz", Some("verbose=1")).ends_with("healthz check passed\n"));
    }
}
