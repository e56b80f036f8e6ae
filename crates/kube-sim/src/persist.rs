//! The state file (`SimConfig::state_file`, `psql-fleet sim --state-file`): what a real
//! control plane keeps across an API server restart (etcd and its certificates), so that
//! a restarted simulator is the same fleet to its clients.
//!
//! The file is JSON, written whole through a temporary file and a rename (owner-only,
//! since it holds the serving key and the bearer tokens):
//!
//! ```json
//! {
//!   "version": 1,
//!   "address": "127.0.0.1:41475",
//!   "tls": {"caPem": "...", "serverCertPem": "...", "serverKeyPem": "..."},
//!   "adminToken": "...",
//!   "clusters": [{
//!     "name": "sim-000",
//!     "labels": {"env": "prod", "region": "eu"},
//!     "token": "...",
//!     "store": {
//!       "resourceVersion": 42,
//!       "objects": [{"resource": "helm.m.crossplane.io/v1beta1/releases", "object": {...}}],
//!       "replays": [{"usage": {...ref}, "target": {...ref}, "propagation": "Background"}]
//!     }
//!   }]
//! }
//! ```
//!
//! `resource` is the resource's path under `/api` or `/apis` (`v1/namespaces`); an object
//! is stored exactly as served (uid, resourceVersion, managedFields, finalizers,
//! deletionTimestamp). `store` is absent for a cluster no client ever used. A replay is a
//! deletion refused by a Usage with `replayDeletion`, kept as Crossplane keeps it on the
//! objects. Not kept, as a restarted API server does not keep them: open watches (the
//! event window restarts empty at the saved resourceVersion, so an older watch gets 410),
//! injected faults, the audit log and the request counters.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cluster::{ClusterState, Replay, Shared};
use super::crds::ResourceType;
use super::sim::Sim;
use super::store::{Key, Store};
use super::{kubeconfig, tls};

pub const VERSION: u32 = 1;

/// How often changes are written at most: a simulator killed with SIGKILL loses at most
/// this much, as an API server loses nothing once etcd acknowledged a write.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// A state file that cannot be restored, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct StateError {
    pub path: PathBuf,
    #[source]
    pub kind: StateErrorKind,
}

impl StateError {
    pub fn new(path: &Path, kind: impl Into<StateErrorKind>) -> Self {
        Self {
            path: path.to_path_buf(),
            kind: kind.into(),
        }
    }
}

/// What is wrong with a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateErrorKind {
    /// The file exists but cannot be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// Not JSON with a `version`.
    #[error("not a simulator state file: {0}")]
    NotStateFile(#[source] serde_json::Error),
    /// Written in a format this simulator does not read.
    #[error("state file version {0} (this simulator reads version {VERSION})")]
    Version(u32),
    /// This version's format, but not as it is written.
    #[error("invalid state file: {0}")]
    Invalid(#[source] serde_json::Error),
    /// The saved certificates cannot serve.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A saved object or replay names a resource type the simulator does not serve.
    #[error("cluster {cluster}: unknown resource {resource:?}")]
    UnknownResource { cluster: String, resource: String },
    /// A saved object without a name.
    #[error("cluster {cluster}: a {resource} object without metadata.name")]
    Nameless { cluster: String, resource: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    pub tls: tls::Certs,
    pub admin_token: String,
    pub clusters: Vec<SavedCluster>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedCluster {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<SavedStore>,
}

impl std::fmt::Debug for SavedCluster {
    // The token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedCluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedStore {
    pub resource_version: u64,
    pub objects: Vec<SavedObject>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replays: Vec<SavedReplay>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedObject {
    pub resource: String,
    pub object: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedReplay {
    pub usage: SavedRef,
    pub target: SavedRef,
    pub propagation: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavedRef {
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Debug for StateFile {
    // The admin token and the key are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile")
            .field("version", &self.version)
            .field("address", &self.address)
            .field("clusters", &self.clusters)
            .finish_non_exhaustive()
    }
}

fn resource_id(r: &ResourceType) -> String {
    format!("{}/{}", r.api_version(), r.plural)
}

/// The saved state, `None` when the file does not exist yet (a first start). Anything else
/// that keeps it from being read is an error: starting empty instead would show every
/// client its objects deleted.
pub fn read(path: &Path) -> Result<Option<StateFile>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::new(path, StateErrorKind::Read(e))),
    };
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_str(&text)
        .map_err(|e| StateError::new(path, StateErrorKind::NotStateFile(e)))?;
    if v.version != VERSION {
        return Err(StateError::new(path, StateErrorKind::Version(v.version)));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| StateError::new(path, StateErrorKind::Invalid(e)))
}

/// A restored cluster: its objects exactly as saved, its resourceVersion counter, and an
/// event window that starts empty there.
pub fn restore_cluster(
    sh: &Shared,
    name: &str,
    saved: &SavedStore,
) -> Result<ClusterState, StateErrorKind> {
    let index: HashMap<String, usize> = sh
        .registry
        .iter()
        .enumerate()
        .map(|(i, r)| (resource_id(r), i))
        .collect();
    let res = |id: &str| {
        index
            .get(id)
            .copied()
            .ok_or_else(|| StateErrorKind::UnknownResource {
                cluster: name.into(),
                resource: id.into(),
            })
    };
    let mut objects = BTreeMap::new();
    for o in &saved.objects {
        let meta = |field: &str| {
            o.object
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let key = Key {
            res: res(&o.resource)?,
            namespace: meta("namespace"),
            name: meta("name"),
        };
        if key.name.is_empty() {
            return Err(StateErrorKind::Nameless {
                cluster: name.into(),
                resource: o.resource.clone(),
            });
        }
        objects.insert(key, o.object.clone());
    }
    let key = |r: &SavedRef| -> Result<Key, StateErrorKind> {
        Ok(Key {
            res: res(&r.resource)?,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        })
    };
    let mut replays = BTreeMap::new();
    for r in &saved.replays {
        replays.insert(
            key(&r.usage)?,
            Replay {
                target: key(&r.target)?,
                propagation: r.propagation.clone(),
            },
        );
    }
    let store = Store::restore(sh.config.window(), saved.resource_version, objects);
    Ok(ClusterState::restored(name, store, replays))
}

fn saved_ref(sh: &Shared, k: &Key) -> SavedRef {
    SavedRef {
        resource: resource_id(&sh.registry[k.res]),
        namespace: k.namespace.clone(),
        name: k.name.clone(),
    }
}

fn save_cluster(sh: &Shared, state: &ClusterState) -> SavedStore {
    // Arc clones under the lock; serialising happens after it is released.
    let (resource_version, objects): (u64, Vec<(usize, Arc<Value>)>) = {
        let store = state.store();
        (
            store.resource_version(),
            store.all().map(|(k, o)| (k.res, o.clone())).collect(),
        )
    };
    let replays = state
        .replays()
        .iter()
        .map(|(usage, r)| SavedReplay {
            usage: saved_ref(sh, usage),
            target: saved_ref(sh, &r.target),
            propagation: r.propagation.clone(),
        })
        .collect();
    SavedStore {
        resource_version,
        objects: objects
            .into_iter()
            .map(|(res, o)| SavedObject {
                resource: resource_id(&sh.registry[res]),
                object: (*o).clone(),
            })
            .collect(),
        replays,
    }
}

/// Writes the simulator's state to its state file: what does not change while it runs
/// (address, certificates, admin token) plus a snapshot of every cluster.
pub struct Writer {
    pub path: PathBuf,
    pub address: SocketAddr,
    pub certs: tls::Certs,
}

/// What changes the file: a cluster's resourceVersion, token or pending replays.
type Fingerprint = Vec<(u64, String, usize)>;

fn fingerprint(sim: &Sim) -> Fingerprint {
    sim.clusters
        .iter()
        .map(|slot| {
            let state = sim.existing_state(slot);
            (
                state.as_ref().map_or(0, |s| s.store().resource_version()),
                slot.token(),
                state.map_or(0, |s| s.replays().len()),
            )
        })
        .collect()
}

impl Writer {
    pub fn snapshot(&self, sim: &Sim) -> StateFile {
        StateFile {
            version: VERSION,
            address: Some(self.address),
            tls: self.certs.clone(),
            admin_token: sim.admin_token.clone(),
            clusters: sim
                .clusters
                .iter()
                .map(|slot| SavedCluster {
                    name: slot.name.clone(),
                    labels: slot.labels.iter().cloned().collect(),
                    token: slot.token(),
                    store: sim
                        .existing_state(slot)
                        .map(|s| save_cluster(&sim.shared, &s)),
                })
                .collect(),
        }
    }

    pub fn write(&self, sim: &Sim) -> std::io::Result<()> {
        let text = serde_json::to_string(&self.snapshot(sim)).map_err(std::io::Error::other)?;
        kubeconfig::write_durable(&self.path, &text)
    }

    /// Writes after changes, at most once per [`WRITE_INTERVAL`], until `stop`; then a
    /// last time (a clean shutdown loses nothing).
    pub async fn run(self, sim: Arc<Sim>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let writer = Arc::new(self);
        let mut written = fingerprint(&sim);
        let mut tick = tokio::time::interval(WRITE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.changed() => true,
            };
            let now = fingerprint(&sim);
            if now != written || stopping {
                let (w, s) = (writer.clone(), sim.clone());
                let result = tokio::task::spawn_blocking(move || w.write(&s)).await;
                match result {
                    Ok(Ok(())) => written = now,
                    Ok(Err(e)) => {
                        tracing::warn!(path = %writer.path.display(), error = %e, "cannot write the simulator state")
                    }
                    Err(e) => tracing::warn!(error = %e, "the state writer failed"),
                }
            }
            if stopping {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_missing_file_is_a_first_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("none.json")).unwrap().is_none());
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        for text in ["", "{\"version\": 1", "[]", "{\"version\": 1}"] {
            let (_dir, path) = write(text);
            let e = read(&path).unwrap_err();
            assert_eq!(e.path, path);
            assert!(e.to_string().contains("state.json"), "{e}");
        }
    }

    #[test]
    fn another_version_is_refused_by_number() {
        let (_dir, path) = write(r#"{"version": 2, "whatever": true}"#);
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = SavedCluster {
            name: "a".into(),
            labels: BTreeMap::new(),
            token: "s3cret-token".into(),
            store: None,
        };
        let certs = tls::Certs {
            ca_pem: "ca".into(),
            server_cert_pem: "cert".into(),
            server_key_pem: "s3cret-key".into(),
        };
        let shown = format!("{c:?} {certs:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
