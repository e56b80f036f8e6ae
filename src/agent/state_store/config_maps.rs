//! The rollout state in ConfigMaps on the management cluster, in the agent's namespace:
//! `<lease>-rollout` holds the [`State`], and one immutable `<lease>-revision-<id>` per
//! revision some cluster is still given holds that revision's fleet files. All carry the
//! fleet's inventory label, so `kubectl get cm -l fleet.hops.ops.com.ai/fleet=<name>`
//! finds them.
//!
//! The state is replaced under the `resourceVersion` last read or written: a replica that
//! led before and writes late, or a second agent started by mistake, makes the next write
//! fail with 409 Conflict instead of one of them losing the other's decisions unseen. The
//! conflict is reported (see [`ConfigMaps::conflicts`]), and the term of leading ends, so
//! the state is read back before anything else is decided.
//!
//! Writes happen only while the fence allows them: a replica that has lost its Lease
//! writes neither to fleet clusters nor here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use tokio::sync::{mpsc, watch};

use super::{codec, Keeper, Loaded, Settled};
use crate::agent::leader::Fence;
use fleet_core::fleetdir::FileTree;
use fleet_core::rollout::State;

const STATE_KEY: &str = "state.json.gz";
const FILES_KEY: &str = "files.json.gz";
/// Which agent's state an object holds (the Lease's name: one per agent deployment).
const STATE_OF: &str = "fleet.hops.ops.com.ai/state-of";
/// `state` or `revision`.
const KEPT: &str = "fleet.hops.ops.com.ai/kept";
const REVISION: &str = "fleet.hops.ops.com.ai/revision";
const WRITTEN_BY: &str = "fleet.hops.ops.com.ai/written-by";
const FLEET: &str = "fleet.hops.ops.com.ai/fleet";
/// How long an operator's call waits for its decision to be kept.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("ConfigMap {namespace}/{name}: {source}; move it away to start the rollout over")]
    Corrupt {
        namespace: String,
        name: String,
        #[source]
        source: codec::Error,
    },
}

enum Op {
    State(u64, State),
    Revision(String, FileTree),
    Retain(BTreeSet<String>),
}

/// Everything the writer task and the readers share.
struct Common {
    api: Api<ConfigMap>,
    namespace: String,
    prefix: String,
    identity: String,
    fence: Fence,
    fleet: Mutex<Option<String>>,
    /// The state ConfigMap's `resourceVersion` as last read or written; `None` when there
    /// is none yet.
    version: Mutex<Option<String>>,
    /// Bumped by every load: operations queued before it are from a term that ended.
    epoch: AtomicU64,
}

pub struct ConfigMaps {
    common: Arc<Common>,
    ops: mpsc::UnboundedSender<(u64, Op)>,
    asked: AtomicU64,
    kept: watch::Receiver<u64>,
    conflicts: watch::Receiver<u64>,
}

impl ConfigMaps {
    /// Keeps the state of the agent whose Lease is `lease` in `namespace`; spawns the task
    /// that writes.
    pub fn spawn(
        client: kube::Client,
        namespace: &str,
        lease: &str,
        identity: &str,
        fence: Fence,
    ) -> ConfigMaps {
        let common = Arc::new(Common {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            prefix: lease.into(),
            identity: identity.into(),
            fence,
            fleet: Mutex::new(None),
            version: Mutex::new(None),
            epoch: AtomicU64::new(0),
        });
        let (ops, rx) = mpsc::unbounded_channel();
        let (kept_tx, kept) = watch::channel(0);
        let (conflicts_tx, conflicts) = watch::channel(0);
        tokio::spawn(write_loop(common.clone(), rx, kept_tx, conflicts_tx));
        ConfigMaps {
            common,
            ops,
            asked: AtomicU64::new(0),
            kept,
            conflicts,
        }
    }

    /// Where the state is kept, for the status.
    pub fn describe(&self) -> String {
        format!(
            "ConfigMap {}/{}",
            self.common.namespace,
            state_name(&self.common.prefix)
        )
    }

    /// Changes on every write refused with 409 Conflict.
    pub fn conflicts(&self) -> watch::Receiver<u64> {
        self.conflicts.clone()
    }

    /// Reads the state and the files of every revision it names. Writes queued before
    /// are dropped: they were decided on what this replaces.
    pub async fn load(&self) -> Result<Loaded, Error> {
        let c = &self.common;
        c.epoch.fetch_add(1, Ordering::SeqCst);
        let name = state_name(&c.prefix);
        let found = c.api.get_opt(&name).await.map_err(|source| Error::Api {
            namespace: c.namespace.clone(),
            name: name.clone(),
            source,
        })?;
        let (state, version) = match found {
            None => (State::default(), None),
            Some(cm) => {
                let bytes = binary(&cm, STATE_KEY);
                let state = codec::decode_state(bytes).map_err(|source| Error::Corrupt {
                    namespace: c.namespace.clone(),
                    name: name.clone(),
                    source,
                })?;
                (state, cm.metadata.resource_version)
            }
        };
        let mut revisions = BTreeMap::new();
        for revision in state.revisions() {
            revisions.insert(revision.clone(), self.load_revision(&revision).await);
        }
        tracing::info!(configmap = %format!("{}/{name}", c.namespace), resource_version = ?version, revisions = revisions.len(), rollout = ?state.rollout.as_ref().map(|r| &r.revision), "rollout state loaded");
        if let Ok(mut v) = c.version.lock() {
            *v = version;
        }
        Ok(Loaded { state, revisions })
    }

    /// Under `--shards`, on a replica that does not lead: the state as the leader last
    /// wrote it, unless its `resourceVersion` is still `seen` (`None` then), with the files
    /// of the revisions it names that are not in `known`. Neither what the leader's writes
    /// are conditioned on nor its queue is touched.
    pub async fn read_if_changed(
        &self,
        seen: Option<&str>,
        known: &BTreeSet<String>,
    ) -> Result<Option<(String, Loaded)>, Error> {
        let c = &self.common;
        let name = state_name(&c.prefix);
        let found = c.api.get_opt(&name).await.map_err(|source| Error::Api {
            namespace: c.namespace.clone(),
            name: name.clone(),
            source,
        })?;
        let Some(cm) = found else {
            return Ok(None);
        };
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        if seen == Some(version.as_str()) {
            return Ok(None);
        }
        let state =
            codec::decode_state(binary(&cm, STATE_KEY)).map_err(|source| Error::Corrupt {
                namespace: c.namespace.clone(),
                name: name.clone(),
                source,
            })?;
        let mut revisions = BTreeMap::new();
        for revision in state.revisions() {
            if !known.contains(&revision) {
                revisions.insert(revision.clone(), self.load_revision(&revision).await);
            }
        }
        Ok(Some((version, Loaded { state, revisions })))
    }

    async fn load_revision(&self, revision: &str) -> Result<FileTree, String> {
        let c = &self.common;
        let name = revision_name(&c.prefix, revision)
            .ok_or_else(|| format!("unusable revision id {revision:?}"))?;
        let whose = format!("ConfigMap {}/{name}", c.namespace);
        match c.api.get_opt(&name).await {
            Ok(Some(cm)) => codec::decode_files(revision, binary(&cm, FILES_KEY))
                .map_err(|e| format!("{whose}: {e}")),
            Ok(None) => Err(format!("{whose} not found")),
            Err(e) => Err(format!("{whose}: {}", crate::error_chain::chain(&e))),
        }
    }

    fn queue(&self, op: Op) {
        let epoch = self.common.epoch.load(Ordering::SeqCst);
        let _ = self.ops.send((epoch, op));
    }
}

impl Keeper for ConfigMaps {
    fn save(&self, state: &State) {
        let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.queue(Op::State(n, state.clone()));
    }

    fn save_revision(&self, revision: &str, tree: &FileTree) {
        self.queue(Op::Revision(revision.into(), tree.clone()));
    }

    fn retain(&self, keep: &BTreeSet<String>) {
        self.queue(Op::Retain(keep.clone()));
    }

    fn fleet_named(&self, name: &str) {
        if let Ok(mut f) = self.common.fleet.lock() {
            *f = Some(name.into());
        }
    }

    fn settled(&self) -> Settled {
        let asked = self.asked.load(Ordering::SeqCst);
        let mut kept = self.kept.clone();
        Box::pin(async move {
            tokio::time::timeout(SETTLE_TIMEOUT, kept.wait_for(|k| *k >= asked))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }
}

fn state_name(prefix: &str) -> String {
    format!("{prefix}-rollout")
}

/// Revision ids are hex digests (a source's, and an inventory's after a `-`), which make
/// a valid name; anything else is refused.
fn revision_name(prefix: &str, revision: &str) -> Option<String> {
    let ok = !revision.is_empty()
        && revision.len() <= 128
        && !revision.starts_with('-')
        && !revision.ends_with('-')
        && revision
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '-');
    ok.then(|| format!("{prefix}-revision-{revision}"))
}

fn binary<'a>(cm: &'a ConfigMap, key: &str) -> &'a [u8] {
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .unwrap_or_default()
}

/// Label values are at most 63 characters; a longer fleet name is left off.
fn labels(c: &Common, kept: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "psql-fleet".to_string(),
        ),
        (STATE_OF.to_string(), c.prefix.clone()),
        (KEPT.to_string(), kept.to_string()),
    ]);
    if let Some(fleet) = c
        .fleet
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .filter(|f| f.len() <= 63)
    {
        labels.insert(FLEET.into(), fleet);
    }
    labels
}

/// What a write came to.
enum Outcome {
    Done,
    /// 409: somebody else wrote since this replica read.
    Conflict,
    /// Worth trying again (the management cluster did not answer, or answered 5xx).
    Retry(String),
    /// Will not work however often it is tried.
    Refused(String),
}

fn outcome(e: &kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) if s.code == 409 => Outcome::Conflict,
        kube::Error::Api(s) if (400..500).contains(&s.code) && s.code != 429 => {
            Outcome::Refused(crate::error_chain::chain(e))
        }
        _ => Outcome::Retry(crate::error_chain::chain(e)),
    }
}

async fn write_state(c: &Common, state: &State) -> Outcome {
    let bytes = match codec::encode_state(state) {
        Ok(b) => b,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let name = state_name(&c.prefix);
    let version = c.version.lock().ok().and_then(|v| v.clone());
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(c.namespace.clone()),
            labels: Some(labels(c, "state")),
            annotations: Some(BTreeMap::from([(WRITTEN_BY.into(), c.identity.clone())])),
            resource_version: version.clone(),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(STATE_KEY.into(), ByteString(bytes))])),
        ..ConfigMap::default()
    };
    let pp = PostParams {
        field_manager: Some(crate::cluster::apply::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let written = match version {
        Some(_) => c.api.replace(&name, &pp, &cm).await,
        None => c.api.create(&pp, &cm).await,
    };
    match written {
        Ok(cm) => {
            if let Ok(mut v) = c.version.lock() {
                *v = cm.metadata.resource_version;
            }
            Outcome::Done
        }
        Err(e) => outcome(&e),
    }
}

async fn write_revision(c: &Common, revision: &str, tree: &FileTree) -> Outcome {
    let Some(name) = revision_name(&c.prefix, revision) else {
        return Outcome::Refused(format!("unusable revision id {revision:?}"));
    };
    let bytes = match codec::encode_files(revision, tree) {
        Ok(b) => b,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(c.namespace.clone()),
            labels: Some(labels(c, "revision")),
            annotations: Some(BTreeMap::from([
                (REVISION.into(), revision.into()),
                (WRITTEN_BY.into(), c.identity.clone()),
            ])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(FILES_KEY.into(), ByteString(bytes))])),
        immutable: Some(true),
        ..ConfigMap::default()
    };
    match c.api.create(&PostParams::default(), &cm).await {
        Ok(_) => Outcome::Done,
        // Kept already: the files of a revision never change.
        Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Done,
        Err(e) => outcome(&e),
    }
}

async fn retain(c: &Common, keep: &BTreeSet<String>) -> Outcome {
    let selector = format!("{STATE_OF}={},{KEPT}=revision", c.prefix);
    let list = match c.api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l,
        Err(e) => return outcome(&e),
    };
    for cm in list.items {
        let revision = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if revision.is_some_and(|r| keep.contains(r)) {
            continue;
        }
        if let Some(name) = &cm.metadata.name {
            if let Err(e) = c.api.delete(name, &DeleteParams::default()).await {
                // Left for the next retain: a kept revision too many costs nothing.
                tracing::debug!(error = %crate::error_chain::chain(&e), "cannot delete a revision no cluster is given");
            }
        }
    }
    Outcome::Done
}

/// Writes what is queued, in order, the newest state only (each state supersedes the
/// ones before it; the revisions it names are written before it).
async fn write_loop(
    c: Arc<Common>,
    mut rx: mpsc::UnboundedReceiver<(u64, Op)>,
    kept: watch::Sender<u64>,
    conflicts: watch::Sender<u64>,
) {
    let mut revisions: Vec<(String, FileTree)> = Vec::new();
    let mut state: Option<(u64, State)> = None;
    let mut keep: Option<BTreeSet<String>> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let idle = revisions.is_empty() && state.is_none() && keep.is_none();
        if idle {
            match rx.recv().await {
                Some(op) => take(&c, op, &mut revisions, &mut state, &mut keep),
                None => return,
            }
        }
        while let Ok(op) = rx.try_recv() {
            take(&c, op, &mut revisions, &mut state, &mut keep);
        }
        if !c.fence.allows_writes() {
            // Not the leader (any more): the next leader reads the state back.
            revisions.clear();
            state = None;
            keep = None;
            continue;
        }
        let mut failed = None;
        while let Some((revision, tree)) = revisions.first() {
            match write_revision(&c, revision, tree).await {
                Outcome::Done | Outcome::Conflict => {}
                Outcome::Refused(e) => {
                    tracing::error!(%revision, error = %e, "cannot keep the revision's files on the management cluster; after a failover its clusters wait for the rollout to move on");
                }
                Outcome::Retry(e) => {
                    failed = Some(e);
                    break;
                }
            }
            revisions.remove(0);
        }
        if failed.is_none() {
            if let Some((n, s)) = &state {
                match write_state(&c, s).await {
                    Outcome::Done => {
                        kept.send_replace(*n);
                        state = None;
                    }
                    Outcome::Conflict => {
                        tracing::error!(configmap = %format!("{}/{}", c.namespace, state_name(&c.prefix)), "the rollout state was written by someone else since this replica read it; reading it back before deciding anything more");
                        conflicts.send_modify(|n| *n += 1);
                        state = None;
                        keep = None;
                        continue;
                    }
                    Outcome::Refused(e) => {
                        tracing::error!(error = %e, "cannot save the rollout state on the management cluster");
                        state = None;
                    }
                    Outcome::Retry(e) => failed = Some(e),
                }
            }
        }
        if failed.is_none() {
            if let Some(k) = &keep {
                if let Outcome::Retry(e) = retain(&c, k).await {
                    tracing::debug!(error = %e, "cannot list the kept revisions; trying with the next save");
                }
                keep = None;
            }
        }
        match failed {
            None => backoff = Duration::from_millis(200),
            Some(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot save the rollout state on the management cluster; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn take(
    c: &Common,
    (epoch, op): (u64, Op),
    revisions: &mut Vec<(String, FileTree)>,
    state: &mut Option<(u64, State)>,
    keep: &mut Option<BTreeSet<String>>,
) {
    if epoch != c.epoch.load(Ordering::SeqCst) {
        return;
    }
    match op {
        Op::Revision(r, t) => {
            if !revisions.iter().any(|(have, _)| *have == r) {
                revisions.push((r, t));
            }
        }
        Op::State(n, s) => *state = Some((n, s)),
        Op::Retain(k) => *keep = Some(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kubernetes_names_and_odd_revisions_are_refused() {
        assert_eq!(state_name("psql-fleet"), "psql-fleet-rollout");
        assert_eq!(
            revision_name("psql-fleet", "3f2a9c").as_deref(),
            Some("psql-fleet-revision-3f2a9c")
        );
        assert_eq!(revision_name("p", "../x"), None);
        assert_eq!(revision_name("p", "ABC"), None);
        assert_eq!(revision_name("p", ""), None);
    }
}
