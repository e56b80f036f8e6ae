//! A local fleet directory, watched with `notify`. Events are debounced: a revision is read
//! only once the directory has been quiet for the settle time, so an editor's partial write
//! (truncate, then write; or write a temporary file, then rename) is never taken as one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use fleet_core::fleetdir::FileTree;

use super::{content_hash, Revision};

/// Quiet time after the last change before the directory is read.
pub const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{dir}: cannot watch fleet directory: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(transparent)]
    Read(#[from] fleet_core::fleetdir::OpenError),
}

/// Reads the directory as a revision named by its content hash.
pub fn read(dir: &Path) -> Result<Revision, Error> {
    let tree = FileTree::from_dir(dir).map_err(Error::Read)?;
    Ok(Revision {
        id: content_hash(&tree),
        tree,
    })
}

/// Watches `dir` and sends a revision at start and after every settled change that alters
/// the files. Ends when the receiver is dropped.
pub async fn watch(dir: PathBuf, settle: Duration, out: mpsc::Sender<Result<Revision, Error>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::Recursive).map(|()| w));
    let _watcher = match watcher {
        Ok(w) => w,
        Err(source) => {
            let _ = out
                .send(Err(Error::Watch {
                    dir: dir.clone(),
                    source,
                }))
                .await;
            return;
        }
    };
    let mut last: Option<String> = None;
    loop {
        let revision = read(&dir);
        let changed = match &revision {
            Ok(r) => last.as_deref() != Some(r.id.as_str()),
            Err(_) => true,
        };
        if changed {
            if let Ok(r) = &revision {
                last = Some(r.id.clone());
            }
            if out.send(revision).await.is_err() {
                return;
            }
        }
        // Wait for a change, then for the directory to settle.
        if rx.recv().await.is_none() {
            return;
        }
        loop {
            match tokio::time::timeout(settle, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {kubeconfig: c1.yaml}\n";

    #[tokio::test]
    async fn a_burst_of_writes_becomes_one_revision_after_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("clusters")).unwrap();
        std::fs::write(dir.path().join("clusters/c1.yaml"), CLUSTER).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(watch(
            dir.path().to_path_buf(),
            Duration::from_millis(300),
            tx,
        ));
        let first = rx.recv().await.unwrap().unwrap();
        assert!(first.tree.files.contains_key("clusters/c1.yaml"));

        // A partial write followed quickly by the complete one.
        let path = dir.path().join("clusters/c2.yaml");
        std::fs::write(&path, "apiVersion: fleet.hops").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, CLUSTER.replace("c1", "c2")).unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_ne!(second.id, first.id);
        assert!(fleet_core::fleetdir::load(&second.tree).fleet.is_some());
        // No third revision: the partial file was never read on its own.
        assert!(tokio::time::timeout(Duration::from_millis(800), rx.recv())
            .await
            .is_err());
        task.abort();
    }
}
