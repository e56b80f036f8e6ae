//! Changes in the credentials directory, for the workers to re-check their kubeconfig. One
//! `notify` watch for the whole fleet replaces each worker reading and hashing its file on
//! every resync: a worker re-reads it only once something in the directory changed (a
//! rotated token, a file replaced by rename, a secret volume's `..data` link re-pointed).
//!
//! Events are debounced, so a file written in several steps is read once it settles. The
//! directory is followed by its path, as the fleet source is: every `recheck` the path is
//! resolved again, and a directory deleted and created again (a new inode) is watched anew
//! and announced as a change. When no watch can be set (no inotify instance left, a
//! directory that is not there yet), every recheck is announced instead, which is what the
//! workers did on their own before: they then poll at the resync interval.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Quiet time after the last event before the change is announced.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Where the workers learn of changes: a counter that moves on each one.
#[derive(Clone, Debug)]
pub struct Changes {
    rx: watch::Receiver<u64>,
}

impl Changes {
    /// Changes announced by another source (the Cluster API kubeconfig Secrets).
    pub fn from_receiver(rx: watch::Receiver<u64>) -> Changes {
        Changes { rx }
    }

    /// A receiver that has seen every change so far: the next one wakes it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

/// Watches `dir` until the returned task is aborted. The watch is set before this returns,
/// so a worker that subscribes afterwards misses no change.
pub fn watch(dir: PathBuf, recheck: Duration) -> (Changes, JoinHandle<()>) {
    let (tx, rx) = watch::channel(0u64);
    let (events_tx, events) = mpsc::unbounded_channel::<()>();
    // An error (a queue overflow) may hide a change, so it counts as one.
    let watcher = crate::file_watch::changes_only(move |_: notify::Result<notify::Event>| {
        let _ = events_tx.send(());
    })
    .map_err(|error| tracing::warn!(dir = %dir.display(), %error, "cannot watch the credentials directory"))
    .ok();
    let mut follow = Follow {
        dir,
        watcher,
        watched: None,
        watching: false,
    };
    follow.refresh(true);
    let task = tokio::spawn(run(follow, events, recheck, tx));
    (Changes { rx }, task)
}

/// The directory's real path and inode, which change when it is replaced.
fn target(dir: &Path) -> Option<(PathBuf, u64, u64)> {
    let path = std::fs::canonicalize(dir).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    meta.is_dir().then(|| (path, meta.dev(), meta.ino()))
}

/// The watch that follows the directory's path.
struct Follow {
    dir: PathBuf,
    watcher: Option<RecommendedWatcher>,
    /// What the path resolved to when last looked at.
    watched: Option<(PathBuf, u64, u64)>,
    /// Whether a watch is set on it.
    watching: bool,
}

impl Follow {
    /// Sets the watch again if the path resolves elsewhere now (or `first`); whether it did.
    fn refresh(&mut self, first: bool) -> bool {
        let now = target(&self.dir);
        if !first && now == self.watched {
            return false;
        }
        if let (Some(w), Some((old, ..))) = (self.watcher.as_mut(), &self.watched) {
            let _ = w.unwatch(old);
        }
        self.watching = match (self.watcher.as_mut(), &now) {
            (Some(w), Some((path, ..))) => w.watch(path, RecursiveMode::Recursive).is_ok(),
            _ => false,
        };
        if !self.watching {
            tracing::warn!(dir = %self.dir.display(), "cannot watch the credentials directory; kubeconfigs are re-read every interval");
        }
        self.watched = now;
        true
    }
}

async fn run(
    mut follow: Follow,
    mut events: mpsc::UnboundedReceiver<()>,
    recheck: Duration,
    changes: watch::Sender<u64>,
) {
    let announce = || changes.send_modify(|n| *n = n.wrapping_add(1));
    let mut tick = tokio::time::interval_at(Instant::now() + recheck, recheck);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Closed when no watcher could be made: the rechecks are all there is then.
    let mut events_open = true;
    loop {
        // Replaced whole (or gone, or there at last): whatever the workers read may have
        // changed with it.
        if follow.refresh(false) {
            announce();
        }
        tokio::select! {
            event = events.recv(), if events_open => {
                if event.is_none() {
                    events_open = false;
                    continue;
                }
                // Announced once the directory is quiet.
                let mut quiet = Instant::now() + SETTLE;
                loop {
                    tokio::select! {
                        more = events.recv() => match more {
                            Some(()) => quiet = Instant::now() + SETTLE,
                            None => break,
                        },
                        _ = tokio::time::sleep_until(quiet) => break,
                    }
                }
                // Set the watch again: a directory deleted and made again at once may come
                // back with the same inode number, and the old watch went with the old one.
                follow.refresh(true);
                announce();
            }
            _ = tick.tick() => {
                if !follow.watching {
                    announce();
                }
            }
            _ = changes.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut watch::Receiver<u64>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn a_kubeconfig_replaced_by_rename_is_announced_once_it_settles_and_reads_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c1.yaml");
        std::fs::write(&path, "token: a\n").unwrap();
        let (changes, task) = watch(dir.path().to_path_buf(), Duration::from_secs(3600));
        // Let the watch be set.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut rx = changes.subscribe();
        // Reading (as the workers do) is no change.
        std::fs::read(&path).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(600), rx.changed())
                .await
                .is_err(),
            "a read was announced"
        );
        // Written to a temporary file and renamed over it, as the token is rotated.
        std::fs::write(dir.path().join(".c1.yaml.tmp"), "token: b\n").unwrap();
        std::fs::rename(dir.path().join(".c1.yaml.tmp"), &path).unwrap();
        assert!(next(&mut rx).await, "the rotation was not announced");
        // Both events of the rename came as one announcement.
        assert!(
            tokio::time::timeout(Duration::from_millis(600), rx.changed())
                .await
                .is_err()
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_watched_is_announced_every_recheck() {
        let root = tempfile::tempdir().unwrap();
        let (changes, task) = watch(root.path().join("missing"), Duration::from_millis(100));
        let mut rx = changes.subscribe();
        assert!(next(&mut rx).await);
        assert!(next(&mut rx).await);
        task.abort();
    }

    #[tokio::test]
    async fn a_directory_deleted_and_created_again_is_watched_anew() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("creds");
        std::fs::create_dir(&dir).unwrap();
        let (changes, task) = watch(dir.clone(), Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut rx = changes.subscribe();
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert!(next(&mut rx).await, "the replacement was not announced");
        // Let the recheck set the new watch, then quiet down.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let mut rx = changes.subscribe();
        std::fs::write(dir.join("c1.yaml"), "token: c\n").unwrap();
        assert!(
            next(&mut rx).await,
            "a change in the new directory was missed"
        );
        task.abort();
    }
}
