//! Where revisions of the fleet directory come from: a local directory watched for changes
//! ([`local`]) or a Git repository fetched on an interval ([`git`]). Both hand over a
//! [`Revision`]: the files of one revision in memory, named by an id, ready for
//! [`fleet_core::fleetdir::load`] to validate as a whole.

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
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
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
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
