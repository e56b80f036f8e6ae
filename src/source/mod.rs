//! Where revisions of the fleet directory come from: a local directory watched for changes
//! ([`local`]) or a Git repository fetched on an interval ([`git`]). Both hand over a
//! [`Revision`]: the files of one revision in memory, named by an id, ready for
//! [`fleet_core::fleetdir::load()`] to validate as a whole.

pub mod git;
pub mod local;
pub mod verify;

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::webhook::Trigger;
use fleet_core::fleetdir::FileTree;
use fleet_core::model::inventory::{Inventory, INVENTORY_PATH};

/// Why the source gave no revision this time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Local(#[from] local::Error),
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error("the Git fetch stopped before it finished: {0}")]
    Fetch(#[from] tokio::task::JoinError),
    /// A revision read but not signed as `--verify-commits` asks: judged and refused like
    /// one that does not validate, not a source that cannot be read.
    #[error("revision not trusted: {0}")]
    Unverified(#[from] verify::Refused),
}

/// How to read a Git source.
#[derive(Clone, Debug)]
pub struct GitSettings {
    pub cache_dir: PathBuf,
    pub reference: git::GitRef,
    pub credentials: git::Credentials,
    /// How often the remote is fetched when no webhook says so sooner (and a directory
    /// read again when no event said it changed).
    pub interval: Duration,
    /// `--verify-commits`: the signatures a Git revision must carry.
    pub verify: Option<verify::Policy>,
}

/// Reads revisions from `spec` into `out` until the receiver goes away: a directory on
/// every change (debounced) and on the interval, a Git repository on the interval and
/// whenever `trigger` fires (a webhook delivery), handing over only revisions not handed
/// over yet, or the first one read after an error.
pub fn spawn(
    spec: &SourceSpec,
    git: GitSettings,
    out: mpsc::Sender<Result<Revision, Error>>,
    trigger: Trigger,
) -> JoinHandle<()> {
    match spec {
        SourceSpec::Dir(dir) => {
            let (tx, mut rx) = mpsc::channel(4);
            let timing = local::Timing {
                settle: local::SETTLE,
                recheck: git.interval,
            };
            tokio::spawn(local::watch(dir.clone(), timing, tx));
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    if out.send(r.map_err(Error::from)).await.is_err() {
                        return;
                    }
                }
            })
        }
        SourceSpec::Git(url) => {
            let source = git::GitSource {
                url: url.clone(),
                cache_dir: git.cache_dir,
                reference: git.reference,
                credentials: git.credentials,
            };
            let policy = git.verify;
            tokio::spawn(async move {
                let mut last: Option<String> = None;
                loop {
                    let s = source.clone();
                    let p = policy.clone();
                    let read = move || {
                        s.sync()
                            .map_err(Error::from)
                            .and_then(|r| verified(&s, r, p.as_ref()))
                    };
                    let result = match tokio::task::spawn_blocking(read).await {
                        Ok(fetched) => fetched,
                        Err(stopped) => Err(Error::from(stopped)),
                    };
                    // After an error the commit is sent again even if unchanged, so that
                    // the agent knows the remote is back; a commit refused for its
                    // signature is a verdict, not an error: said once, like a revision.
                    let seen = match &result {
                        Ok(r) => Some(r.id.clone()),
                        Err(Error::Unverified(refused)) => Some(refused.commit.clone()),
                        Err(_) => None,
                    };
                    let fresh = seen.is_none() || seen != last;
                    last = seen;
                    if fresh && out.send(result).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(git.interval) => {}
                        _ = trigger.fired() => tracing::info!("webhook: fetching the source now"),
                    }
                }
            })
        }
    }
}

/// `revision` as `policy` judges it: who signed it, or why it is refused. Blocking.
fn verified(
    source: &git::GitSource,
    mut revision: Revision,
    policy: Option<&verify::Policy>,
) -> Result<Revision, Error> {
    let Some(policy) = policy else {
        return Ok(revision);
    };
    let repo = source.repository()?;
    let commit = git2::Oid::from_str(&revision.id).map_err(|e| verify::Refused {
        commit: revision.id.clone(),
        object: format!("commit {}", revision.short_id()),
        why: verify::Why::Unreadable(e.message().into()),
    })?;
    let signed = policy.check(&repo, &source.reference, commit)?;
    revision.verified = Some(signed.to_string());
    Ok(revision)
}

/// One revision of the fleet directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// A commit id for Git, a content hash for a directory.
    pub id: String,
    pub tree: FileTree,
    /// Under `--verify-commits`, who signed it.
    pub verified: Option<String>,
}

impl Revision {
    /// The short form shown in logs, status and the `source_info` series.
    pub fn short_id(&self) -> String {
        short_id(&self.id)
    }

    /// This revision with the clusters found on a Cluster API management cluster stored
    /// among its files, named by both: `<source id>-<inventory digest>`. The source's id
    /// stays in front, so the commit is still what a commit status or a pull request is
    /// found by ([`commit_of`]).
    pub fn with_inventory(&self, inventory: &Inventory) -> Revision {
        let bytes = inventory.to_bytes();
        let digest = hex(&Sha256::digest(&bytes));
        let mut tree = self.tree.clone();
        tree.insert(INVENTORY_PATH, bytes);
        Revision {
            id: format!("{}-{}", self.id, &digest[..INVENTORY_DIGEST_LEN]),
            tree,
            verified: self.verified.clone(),
        }
    }
}

/// Hex digits of the inventory's digest in a revision id.
const INVENTORY_DIGEST_LEN: usize = 12;

/// The source's own id (a commit, or a directory's content hash) in a revision id.
pub fn commit_of(id: &str) -> &str {
    id.split_once('-').map_or(id, |(commit, _)| commit)
}

/// A revision id shortened for people: 12 digits of the source's id, and 8 of the
/// inventory's when there is one.
pub fn short_id(id: &str) -> String {
    match id.split_once('-') {
        Some((commit, inventory)) => format!(
            "{}-{}",
            commit.get(..12).unwrap_or(commit),
            inventory.get(..8).unwrap_or(inventory)
        ),
        None => id.get(..12).unwrap_or(id).to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 over the paths and contents of the fleet files, so that the same files make
/// the same id whatever their timestamps, and a changed byte anywhere makes a new one.
pub fn content_hash(tree: &FileTree) -> String {
    let mut hasher = Sha256::new();
    for (path, bytes) in &tree.files {
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    for problem in &tree.problems {
        hasher.update(problem.to_string().as_bytes());
    }
    hex(&hasher.finalize())
}

/// What `--source` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Dir(std::path::PathBuf),
    Git(String),
}

impl SourceSpec {
    /// A URL with a scheme (or `user@host:path`) is Git; anything else a directory.
    pub fn parse(source: &str) -> SourceSpec {
        let is_url = ["git://", "http://", "https://", "ssh://", "file://"]
            .iter()
            .any(|s| source.starts_with(s))
            || (source.contains('@') && source.contains(':') && !source.starts_with('/'));
        if is_url {
            SourceSpec::Git(source.to_string())
        } else {
            SourceSpec::Dir(source.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_content_hash_follows_the_bytes_and_paths() {
        let mut a = FileTree::default();
        a.insert("claims/a.yaml", "x");
        let mut b = a.clone();
        assert_eq!(content_hash(&a), content_hash(&b));
        b.insert("claims/a.yaml", "y");
        assert_ne!(content_hash(&a), content_hash(&b));
        let mut c = FileTree::default();
        c.insert("claims/b.yaml", "x");
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn an_inventory_makes_a_new_id_that_keeps_the_commit_in_front() {
        let mut tree = FileTree::default();
        tree.insert("claims/a.yaml", "x");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let revision = Revision {
            id: commit.into(),
            tree,
            verified: Some("alice".into()),
        };
        let empty = revision.with_inventory(&Inventory::default());
        let one = revision.with_inventory(&Inventory {
            clusters: vec![fleet_core::model::inventory::FoundCluster {
                namespace: "capi".into(),
                name: "w1".into(),
                labels: Default::default(),
            }],
        });
        assert_ne!(empty.id, one.id);
        assert_eq!(commit_of(&one.id), commit);
        assert_eq!(commit_of(commit), commit);
        assert_eq!(short_id(commit), "0123456789ab");
        assert_eq!(one.short_id(), format!("0123456789ab-{}", &one.id[41..49]));
        assert!(one.tree.files.contains_key(INVENTORY_PATH));
        assert_eq!(one.verified.as_deref(), Some("alice"));
        assert_eq!(
            revision.with_inventory(&Inventory::default()).id,
            empty.id,
            "the same inventory makes the same id"
        );
    }

    #[test]
    fn sources_are_git_urls_or_directories() {
        let cases = [
            ("git://127.0.0.1:9418/fleet", true),
            ("https://example.invalid/fleet.git", true),
            ("git@example.invalid:org/fleet.git", true),
            ("file:///srv/fleet", true),
            ("./fleet", false),
            ("/srv/fleet", false),
        ];
        for (s, git) in cases {
            assert_eq!(
                matches!(SourceSpec::parse(s), SourceSpec::Git(_)),
                git,
                "{s}"
            );
        }
    }
}
