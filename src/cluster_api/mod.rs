//! `run --cluster-api`: the fleet's clusters found on a management cluster running Cluster
//! API, besides `clusters/*.yaml`. Two watches, on `Cluster` objects
//! (`cluster.x-k8s.io/v1beta1`) and on the kubeconfig Secrets Cluster API writes for them
//! (`<cluster>-kubeconfig`, labelled `cluster.x-k8s.io/cluster-name`, key `value`), in the
//! namespaces asked for or all of them. Which Clusters are in the fleet is decided in
//! [`found`]; the kubeconfigs are held in memory ([`kubeconfigs`]).
//!
//! The run loop stores what was found inside each revision it serves
//! ([`crate::source::Revision::with_inventory`]), so that a Cluster that appears, is
//! relabelled or is deleted goes through validation, the mass-prune guard and the rollout
//! waves exactly as a cluster file added, edited or removed in a pull request would.

pub mod found;
pub mod kubeconfigs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error_chain;
use crate::status::{ClusterApiStatus, StatusReport};
use fleet_core::api::cluster_api::{self, control_plane_initialized};
use fleet_core::model::inventory::{SecretRef, KUBECONFIG_KEY};
use found::{Observed, Snapshot};
pub use kubeconfigs::Kubeconfigs;

/// The label Cluster API puts on the Secrets it writes for a Cluster.
pub const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";

/// Quiet time after a change before the inventory is decided again: a Cluster and its
/// Secret created together make one new revision, not two.
const SETTLE: Duration = Duration::from_millis(300);

/// `--cluster-api` and its flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The management cluster's kubeconfig; the in-cluster configuration when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to find Clusters in; every namespace when empty.
    pub namespaces: Vec<String>,
}

/// What the watches found: `None` until both have listed once.
pub type Found = watch::Receiver<Option<Arc<Snapshot>>>;

/// The running watches.
pub struct Inventory {
    pub found: Found,
    pub kubeconfigs: Kubeconfigs,
    pub task: JoinHandle<()>,
}

/// Starts the watches on the management cluster `client`.
pub fn spawn(
    client: kube::Client,
    settings: &Settings,
    status: Arc<RwLock<StatusReport>>,
) -> Inventory {
    let (readers, writer) = kubeconfigs::store();
    let (found_tx, found) = watch::channel(None);
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    if let Ok(mut s) = status.write() {
        s.cluster_api = Some(ClusterApiStatus::default());
    }
    let task = tokio::spawn(follow(client, scopes, writer, found_tx, status));
    Inventory {
        found,
        kubeconfigs: readers,
        task,
    }
}

fn cluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(cluster_api::GROUP, cluster_api::VERSION, cluster_api::KIND),
        "clusters",
    )
}

/// One watch event, from the watch of scope `.0`.
enum Seen {
    Cluster(usize, Result<watcher::Event<DynamicObject>, watcher::Error>),
    Secret(usize, Result<watcher::Event<Secret>, watcher::Error>),
}

/// What one watch (one kind in one scope) holds, kept whole across a re-list.
struct Listed<T> {
    live: BTreeMap<(String, String), T>,
    /// Filled while the watch lists again; replaces `live` when the list is done.
    relist: Option<BTreeMap<(String, String), T>>,
    synced: bool,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed {
            live: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<T> Listed<T> {
    /// Applies one event; whether what is held changed.
    fn apply<K: kube::Resource>(
        &mut self,
        event: watcher::Event<K>,
        convert: impl Fn(&K) -> Option<T>,
    ) -> bool {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            watcher::Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                let into = self.relist.get_or_insert_with(BTreeMap::new);
                if let Some(v) = convert(&o) {
                    into.insert(key(&o), v);
                }
                false
            }
            watcher::Event::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                self.synced = true;
                true
            }
            watcher::Event::Apply(o) => {
                match convert(&o) {
                    Some(v) => self.live.insert(key(&o), v),
                    None => self.live.remove(&key(&o)),
                };
                true
            }
            watcher::Event::Delete(o) => self.live.remove(&key(&o)).is_some(),
        }
    }
}

fn observed(o: &DynamicObject) -> Option<Observed> {
    let status = o.data.get("status").cloned().unwrap_or_default();
    Some(Observed {
        namespace: o.namespace().unwrap_or_default(),
        name: o.name_any(),
        labels: o.labels().clone(),
        initialized: control_plane_initialized(&status),
        deleting: o.metadata.deletion_timestamp.is_some(),
        phase: status["phase"].as_str().map(String::from),
    })
}

fn kubeconfig(s: &Secret) -> Option<Arc<[u8]>> {
    let bytes = s.data.as_ref()?.get(KUBECONFIG_KEY)?;
    Some(Arc::from(bytes.0.as_slice()))
}

async fn follow(
    client: kube::Client,
    scopes: Vec<Option<String>>,
    writer: kubeconfigs::Writer,
    found: watch::Sender<Option<Arc<Snapshot>>>,
    status: Arc<RwLock<StatusReport>>,
) {
    let resource = cluster_resource();
    let secrets_config = watcher::Config::default().labels(CLUSTER_NAME_LABEL);
    let clusters = scopes.iter().enumerate().map(|(i, ns)| {
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |e| Seen::Cluster(i, e))
            .boxed()
    });
    let secrets = scopes.iter().enumerate().map(|(i, ns)| {
        let api: Api<Secret> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        watcher::watcher(api, secrets_config.clone())
            .default_backoff()
            .map(move |e| Seen::Secret(i, e))
            .boxed()
    });
    let mut events = futures::stream::select_all(clusters.chain(secrets));
    let mut cluster_lists: Vec<Listed<Observed>> =
        scopes.iter().map(|_| Listed::default()).collect();
    let mut secret_lists: Vec<Listed<Arc<[u8]>>> =
        scopes.iter().map(|_| Listed::default()).collect();
    let mut already: BTreeSet<(String, String)> = BTreeSet::new();
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let settle = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.next() => {
                let changed = match event {
                    None => return,
                    Some(Seen::Cluster(i, Ok(e))) => cluster_lists[i].apply(e, observed),
                    Some(Seen::Secret(i, Ok(e))) => secret_lists[i].apply(e, kubeconfig),
                    Some(Seen::Cluster(_, Err(e)) | Seen::Secret(_, Err(e))) => {
                        let e = error_chain::chain(&e);
                        tracing::warn!(error = %e, "Cluster API: watch failed; retrying (the clusters found stay in the fleet)");
                        set_status(&status, |s| s.error = Some(format!("watch failed: {e}")));
                        false
                    }
                };
                if changed {
                    due = Some(tokio::time::Instant::now() + SETTLE);
                }
            }
            () = settle => {
                due = None;
                let synced = cluster_lists.iter().all(|l| l.synced) && secret_lists.iter().all(|l| l.synced);
                if !synced {
                    continue;
                }
                let observed: Vec<Observed> = cluster_lists.iter().flat_map(|l| l.live.values().cloned()).collect();
                let held: BTreeMap<SecretRef, Arc<[u8]>> = secret_lists
                    .iter()
                    .flat_map(|l| l.live.iter())
                    .map(|((namespace, name), bytes)| (SecretRef { namespace: namespace.clone(), name: name.clone() }, bytes.clone()))
                    .collect();
                let present: BTreeSet<SecretRef> = held.keys().cloned().collect();
                let snapshot = found::decide(&observed, &present, &already);
                already = snapshot.members();
                // The kubeconfigs first: a worker started for a new cluster finds its own.
                writer.replace(held);
                set_status(&status, |s| {
                    s.synced = true;
                    s.clusters = snapshot.inventory.clusters.len();
                    s.waiting.clone_from(&snapshot.waiting);
                    s.error = None;
                });
                found.send_if_modified(|held| {
                    let changed = held.as_deref() != Some(&snapshot);
                    if changed {
                        tracing::info!(clusters = snapshot.inventory.clusters.len(), waiting = snapshot.waiting.len(), "Cluster API: inventory changed");
                        *held = Some(Arc::new(snapshot));
                    }
                    changed
                });
            }
        }
    }
}

fn set_status(status: &RwLock<StatusReport>, f: impl FnOnce(&mut ClusterApiStatus)) {
    if let Ok(mut s) = status.write() {
        f(s.cluster_api.get_or_insert_with(ClusterApiStatus::default));
    }
}
