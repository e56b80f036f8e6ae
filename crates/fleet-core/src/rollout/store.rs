//! The rollout's state on disk (`--state-dir`): `rollout.json` (the [`State`]) and, under
//! `revisions/`, the fleet files of every revision some cluster is still given, so that
//! after a restart a cluster of a later wave is reconciled to its previous desired state
//! even when the source no longer has that revision. Every write goes to a temporary
//! file that is synced and renamed over the old one, so a crash leaves the old or the new
//! file, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::State;
use crate::fleetdir::FileTree;

const STATE_FILE: &str = "rollout.json";
const REVISIONS: &str = "revisions";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a rollout state file ({message}); move it away to start over")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A directory holding the rollout state.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// A revision's fleet files as a JSON object of path to text, as they are kept (on disk
/// here, in a ConfigMap under leader election).
pub fn files_to_json(tree: &FileTree) -> Vec<u8> {
    let files: BTreeMap<&str, String> = tree
        .files
        .iter()
        .map(|(p, b)| (p.as_str(), String::from_utf8_lossy(b).into_owned()))
        .collect();
    serde_json::to_vec(&files).unwrap_or_default()
}

/// The fleet files [`files_to_json`] wrote.
pub fn files_from_json(bytes: &[u8]) -> Result<FileTree, serde_json::Error> {
    let files: BTreeMap<String, String> = serde_json::from_slice(bytes)?;
    let mut tree = FileTree::default();
    for (p, text) in files {
        tree.insert(p, text);
    }
    Ok(tree)
}

/// Revision ids are hex digests (a source's, and an inventory's after a `-`); anything
/// else is refused as a file name.
fn file_name(revision: &str) -> Option<String> {
    let ok = !revision.is_empty()
        && revision.len() <= 128
        && !revision.starts_with('-')
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| format!("{revision}.json"))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, Error> {
        fs::create_dir_all(dir.join(REVISIONS)).map_err(|e| io(dir, e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state; the default (nothing given yet) when there is none.
    pub fn load(&self) -> Result<State, Error> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io(&path, e)),
        }
    }

    pub fn save(&self, state: &State) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        write_atomic(&self.dir.join(STATE_FILE), &bytes)
    }

    /// Keeps the fleet files of `revision` (once; a revision's files never change).
    pub fn save_revision(&self, revision: &str, tree: &FileTree) -> Result<(), Error> {
        let Some(name) = file_name(revision) else {
            return Err(io(&self.dir, format!("unusable revision id {revision:?}")));
        };
        let path = self.dir.join(REVISIONS).join(name);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, &files_to_json(tree))
    }

    /// The fleet files of a kept revision.
    pub fn load_revision(&self, revision: &str) -> Result<FileTree, Error> {
        let Some(name) = file_name(revision) else {
            return Err(io(&self.dir, format!("unusable revision id {revision:?}")));
        };
        let path = self.dir.join(REVISIONS).join(name);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        files_from_json(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })
    }

    /// Deletes the kept revisions not in `keep`.
    pub fn retain_revisions(&self, keep: &BTreeSet<String>) {
        let Ok(entries) = fs::read_dir(self.dir.join(REVISIONS)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json").unwrap_or(&name);
            if !keep.contains(id) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Given, State};

    #[test]
    fn state_and_revisions_round_trip_and_unkept_revisions_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let mut state = State::default();
        state.clusters.insert(
            "dev-1".into(),
            Given {
                revision: "abc123".into(),
                fingerprint: "f".into(),
            },
        );
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);

        let mut tree = FileTree::default();
        tree.insert("claims/a.yaml", "kind: Psql\n");
        store.save_revision("abc123", &tree).unwrap();
        store.save_revision("def456", &tree).unwrap();
        assert_eq!(store.load_revision("abc123").unwrap().files, tree.files);
        store.retain_revisions(&["abc123".to_string()].into());
        assert!(store.load_revision("def456").is_err());
        assert!(store.load_revision("abc123").is_ok());
        assert!(store.save_revision("../x", &tree).is_err());
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("rollout.json"), "{e}");
    }
}
