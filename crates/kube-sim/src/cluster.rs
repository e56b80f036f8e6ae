//! One simulated cluster's state, created on first use so that a thousand idle clusters
//! cost a name and a token each, plus what all clusters share (resource types, schemas,
//! configuration).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::config::SimConfig;
use super::crds::ResourceType;
use super::objects;
use super::ssa;
use super::store::{Key, Store};

/// Read-only state every cluster uses.
pub struct Shared {
    pub registry: Vec<ResourceType>,
    pub schemas: Vec<ssa::Schema>,
    pub config: SimConfig,
    /// The CRD objects every cluster starts with, by registry index, built once: a CRD
    /// with its OpenAPI schema is hundreds of KiB as JSON values, and a copy per cluster
    /// made most of the simulator's memory at ten thousand clusters. Each is stored at the
    /// resourceVersion [`bootstrap_rv`] gives its index, so one object fits every cluster.
    crds: Vec<Option<Arc<Value>>>,
}

/// Resource versions up to here are the namespaces a fresh cluster holds; its CRDs come
/// after, each at this plus its registry index (gaps are fine: resourceVersions are
/// opaque and a real API server's skip whatever else etcd wrote).
const BOOTSTRAP_NAMESPACES_RV: u64 = 5;

fn bootstrap_rv(res: usize) -> u64 {
    BOOTSTRAP_NAMESPACES_RV + 1 + res as u64
}

impl Shared {
    pub fn new(config: SimConfig) -> Self {
        let registry = super::crds::registry();
        let schemas = registry
            .iter()
            .map(|r| {
                let schema = match &r.schema {
                    Some(s) => ssa::Schema::from_openapi_v3(s),
                    None => ssa::Schema::builtin(&r.api_version(), &r.kind)
                        .unwrap_or_else(ssa::Schema::deduced),
                };
                schema.with_status_subresource(r.status_subresource)
            })
            .collect();
        let mut shared = Self {
            registry,
            schemas,
            config,
            crds: Vec::new(),
        };
        shared.crds = (0..shared.registry.len())
            .map(|i| {
                let mut crd = shared.crd_object(i)?;
                objects::meta_mut(&mut crd)
                    .insert("resourceVersion".into(), bootstrap_rv(i).to_string().into());
                Some(Arc::new(crd))
            })
            .collect();
        shared
    }

    /// Resource index by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.registry
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The name of the CRD that serves `res` (`<plural>.<group>`); `None` for a built-in.
    pub fn crd_name(&self, res: usize) -> Option<String> {
        let r = &self.registry[res];
        r.crd.as_ref().map(|_| format!("{}.{}", r.plural, r.group))
    }

    /// The CRD object a cluster holds to serve `res`, as freshly installed and Established.
    pub fn crd_object(&self, res: usize) -> Option<Value> {
        let r = &self.registry[res];
        let mut crd = r.crd.clone()?;
        objects::init_metadata(&mut crd, None, true);
        crd["status"] = json!({
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [r.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": objects::now()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": objects::now()}
            ]
        });
        Some(crd)
    }

    /// Resource index by CRD name (`releases.helm.m.crossplane.io`).
    pub fn find_crd(&self, name: &str) -> Option<usize> {
        (0..self.registry.len()).find(|i| self.crd_name(*i).as_deref() == Some(name))
    }

    /// Resource index by apiVersion and kind, for object references.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        self.registry
            .iter()
            .position(|r| r.api_version() == api_version && r.kind == kind)
    }
}

/// A refused deletion that Crossplane replays once the blocking Usage is gone.
#[derive(Debug, Clone)]
pub struct Replay {
    pub target: Key,
    pub propagation: String,
}

pub struct ClusterState {
    pub name: String,
    store: Mutex<Store>,
    /// Usage key -> the deletion it refused, for `replayDeletion: true`.
    pub replays: Mutex<BTreeMap<Key, Replay>>,
}

impl ClusterState {
    /// A fresh cluster holding the namespaces and CRDs every cluster starts with.
    pub fn new(name: &str, shared: &Shared) -> Self {
        let mut store = Store::new(shared.config.window());
        let ns_res = shared.find("", "v1", "namespaces");
        // Each cluster's own (their uids tell clusters apart: kube-system's is an identity).
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if let Some(res) = ns_res {
                store.put(key(res, "", ns), namespace_object(ns));
            }
        }
        debug_assert!(store.resource_version() <= BOOTSTRAP_NAMESPACES_RV);
        if let Some(res) = shared.find("apiextensions.k8s.io", "v1", "customresourcedefinitions") {
            for i in 0..shared.registry.len() {
                let Some(crd_name) = shared.crd_name(i) else {
                    continue;
                };
                // A cluster started without an API holds no CRD for it: nothing serves it
                // until the CRD is installed.
                if shared.config.without_crds.contains(&crd_name) {
                    continue;
                }
                let optional = super::crds::OPTIONAL_CRDS.contains(&crd_name.as_str());
                if optional && !shared.config.cluster_api.iter().any(|c| c == name) {
                    continue;
                }
                if let Some(crd) = &shared.crds[i] {
                    store.put_built(key(res, "", &crd_name), bootstrap_rv(i), crd.clone());
                }
            }
        }
        Self {
            name: name.to_string(),
            store: Mutex::new(store),
            replays: Mutex::new(BTreeMap::new()),
        }
    }

    /// A cluster restored from a state file ([`crate::persist`]).
    pub fn restored(name: &str, store: Store, replays: BTreeMap<Key, Replay>) -> Self {
        Self {
            name: name.to_string(),
            store: Mutex::new(store),
            replays: Mutex::new(replays),
        }
    }

    /// The store; a poisoned lock still holds consistent data (every write is one `put`),
    /// so it is recovered rather than propagated.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cluster serves `res`: a built-in always, a custom resource while its
    /// CRD object exists, as an API server serves what its CRDs define.
    pub fn serves(&self, shared: &Shared, res: usize) -> bool {
        let (Some(name), Some(crds)) = (
            shared.crd_name(res),
            shared.find("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
        ) else {
            return true;
        };
        self.store().get(&key(crds, "", &name)).is_some()
    }

    /// [`ClusterState::serves`] of every resource type, by registry index.
    pub fn served(&self, shared: &Shared) -> Vec<bool> {
        (0..shared.registry.len())
            .map(|i| self.serves(shared, i))
            .collect()
    }

    pub fn replays(&self) -> MutexGuard<'_, BTreeMap<Key, Replay>> {
        self.replays.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn key(res: usize, namespace: &str, name: &str) -> Key {
    Key {
        res,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

pub fn namespace_object(name: &str) -> Value {
    let mut ns = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    });
    objects::init_metadata(&mut ns, None, false);
    ns
}
