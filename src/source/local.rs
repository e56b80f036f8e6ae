//! A local fleet directory, watched with `notify`. Events are debounced: a revision is read
//! only once the directory has been quiet for the settle time, so an editor's partial write
//! (truncate, then write; or write a temporary file, then rename) is never taken as one.
//!
//! The directory is followed by its path, not by what the path named at start: deploy
//! tools replace a fleet whole (`rm -rf` and copy back, or `ln -sfn new current`), and an
//! inotify watch stays with the inode it was set on. So the parent folder is watched too,
//! for the name being removed, created or re-pointed; the directory's own watch is set
//! again whenever what the path resolves to changes; and a re-check every `recheck` catches
//! whatever the events missed (a parent that cannot be watched, a lost event): it compares
//! the files' sizes, times and inodes with those of the last read, and reads again only
//! when they moved. A directory that cannot be read is an error, never an empty fleet: the
//! agent keeps the last good revision.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use fleet_core::fleetdir::{DirStamp, FileTree};

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

/// How the directory is watched.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Quiet time after the last change before reading.
    pub settle: Duration,
    /// How often the directory is read even without an event.
    pub recheck: Duration,
}

/// Reads the directory as a revision named by its content hash, with the stamp of what was
/// read ([`FileTree::from_dir_stamped`]).
fn read(dir: &Path) -> (Result<Revision, Error>, Option<DirStamp>) {
    match FileTree::from_dir_stamped(dir) {
        Ok((tree, stamp)) => {
            let revision = Revision {
                verified: None,
                id: content_hash(&tree),
                tree,
            };
            (Ok(revision), stamp)
        }
        Err(e) => (Err(Error::Read(e)), None),
    }
}

/// Watches `dir` and sends a revision at start and after every settled change that alters
/// the files; an error when the directory cannot be read, once per distinct error, and the
/// revision again once it can (even unchanged, so that the error is known to be over).
/// Ends when the receiver is dropped.
pub async fn watch(dir: PathBuf, timing: Timing, out: mpsc::Sender<Result<Revision, Error>>) {
    // Absolute, not resolved: the name is what is followed, whatever it points to.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    // Only that something changed is passed on, never the events themselves: a burst (a
    // checkout of thousands of files) is one wake-up, and nothing queues up while the
    // directory is being read.
    let changed = Arc::new(Notify::new());
    let concern = Concern::new(dir.clone());
    let (sifted, tell) = (concern.clone(), changed.clone());
    let handler = move |event: notify::Result<notify::Event>| {
        // What does not concern the directory (another entry of the parent folder) is
        // dropped here, on the watcher's thread, without waking the task.
        if let Ok(event) = event {
            if sifted.of(&event.paths) {
                tell.notify_one();
            }
        }
    };
    let watchers = crate::file_watch::changes_only(handler.clone())
        .and_then(|watcher| Ok((watcher, crate::file_watch::names_only(handler)?)));
    let mut follow = match watchers {
        Ok((watcher, names)) => Follow::new(concern, watcher, names),
        Err(source) => {
            let _ = out.send(Err(Error::Watch { dir, source })).await;
            return;
        }
    };
    let mut last: Option<Result<String, String>> = None;
    // The stamp of the last read that read every file: a re-check that finds it unchanged
    // has nothing new to read (at ten thousand clusters, reading and hashing them on every
    // re-check was the largest part of an idle agent's own work).
    let mut read_at: Option<DirStamp> = None;
    let mut recheck = tokio::time::interval_at(Instant::now() + timing.recheck, timing.recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether this turn comes from the re-check alone, with no event since the last read.
    let mut rechecking = false;
    loop {
        follow.refresh();
        let unchanged =
            rechecking && read_at.is_some() && FileTree::stamp_dir(&dir).ok() == read_at;
        if !unchanged {
            let (revision, stamp) = read(&dir);
            read_at = stamp;
            let seen = match &revision {
                Ok(r) => Ok(r.id.clone()),
                Err(e) => Err(e.to_string()),
            };
            if last.as_ref() != Some(&seen) {
                last = Some(seen);
                if out.send(revision).await.is_err() {
                    return;
                }
            }
        }
        rechecking = !wait(&changed, &mut recheck).await;
        if rechecking {
            continue;
        }
        let mut quiet = Instant::now() + timing.settle;
        loop {
            // A directory created again is watched at once, so that the rest of its copy
            // keeps the settle time running.
            follow.refresh();
            tokio::select! {
                () = changed.notified() => quiet = Instant::now() + timing.settle,
                () = tokio::time::sleep_until(quiet) => break,
            }
        }
    }
}

/// Waits for a change that concerns the directory (`true`) or the re-check (`false`).
async fn wait(changed: &Notify, recheck: &mut tokio::time::Interval) -> bool {
    tokio::select! {
        () = changed.notified() => true,
        _ = recheck.tick() => false,
    }
}

/// What the followed path resolves to: the directory's real path and its inode, which
/// changes when it is deleted and created again under the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    path: PathBuf,
    inode: (u64, u64),
}

impl Target {
    fn of(dir: &Path) -> Option<Target> {
        let path = std::fs::canonicalize(dir).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        meta.is_dir().then(|| Target {
            path,
            inode: (meta.dev(), meta.ino()),
        })
    }
}

/// The paths whose events concern the directory: the name itself (from the parent's
/// watch), or anything under the directory it resolves to now. Other entries of the parent
/// are ignored, so a busy parent never holds off a read. Shared with the watcher's thread,
/// which drops the rest before they reach the task.
#[derive(Clone)]
struct Concern {
    dir: PathBuf,
    target: Arc<RwLock<Option<PathBuf>>>,
}

impl Concern {
    fn new(dir: PathBuf) -> Concern {
        Concern {
            dir,
            target: Arc::default(),
        }
    }

    fn of(&self, paths: &[PathBuf]) -> bool {
        let target = self.target.read().unwrap_or_else(|e| e.into_inner());
        paths
            .iter()
            .any(|p| p.starts_with(&self.dir) || target.as_ref().is_some_and(|t| p.starts_with(t)))
    }

    fn set_target(&self, path: Option<PathBuf>) {
        *self.target.write().unwrap_or_else(|e| e.into_inner()) = path;
    }
}

/// The watches that follow one directory path.
struct Follow {
    /// The directory's path as given (its `dir`), and what concerns it.
    concern: Concern,
    /// The directory's watch, for any change under it.
    watcher: RecommendedWatcher,
    /// The parent folder's watch, for names only: what else is written there (a log
    /// beside the fleet) wakes nothing.
    names: RecommendedWatcher,
    /// The directory watched now, if any.
    target: Option<Target>,
    /// The parent folder as watched, if it is (it may not exist yet either, and it may be
    /// replaced as the directory is).
    parent: Option<Target>,
}

impl Follow {
    fn new(concern: Concern, watcher: RecommendedWatcher, names: RecommendedWatcher) -> Follow {
        Follow {
            concern,
            watcher,
            names,
            target: None,
            parent: None,
        }
    }

    /// Sets the watches again where what they watch has changed.
    fn refresh(&mut self) {
        if let Some(parent) = self.concern.dir.parent() {
            let now = Target::of(parent);
            if now != self.parent {
                let _ = self.names.unwatch(parent);
                // Watched by the path as given, so that its events name `dir` as given.
                self.parent = now.filter(|_| {
                    self.names
                        .watch(parent, RecursiveMode::NonRecursive)
                        .is_ok()
                });
            }
        }
        let now = Target::of(&self.concern.dir);
        if now == self.target {
            return;
        }
        if let Some(old) = self.target.take() {
            // Already gone with its directory, as often as not.
            let _ = self.watcher.unwatch(&old.path);
        }
        // Before the watch is set, so that none of its events is dropped as another's.
        self.concern
            .set_target(now.as_ref().map(|t| t.path.clone()));
        if let Some(target) = now {
            match self.watcher.watch(&target.path, RecursiveMode::Recursive) {
                Ok(()) => {
                    tracing::debug!(dir = ?self.concern.dir, target = ?target.path, "watching the fleet directory");
                    self.target = Some(target);
                }
                // Left unwatched: the next refresh tries again, the re-check reads it.
                Err(error) => {
                    tracing::warn!(dir = ?self.concern.dir, %error, "cannot watch the fleet directory; reading it periodically")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {kubeconfig: c1.yaml}\n";

    /// Re-checks far apart, so that only events explain what the tests see.
    const EVENTS_ONLY: Timing = Timing {
        settle: Duration::from_millis(300),
        recheck: Duration::from_secs(3600),
    };

    async fn next(rx: &mut mpsc::Receiver<Result<Revision, Error>>) -> Result<Revision, Error> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a revision within 5 s")
            .expect("the watcher still runs")
    }

    /// The directory watched from now: its revisions, and the task to abort.
    fn watching(
        dir: &Path,
        timing: Timing,
    ) -> (
        mpsc::Receiver<Result<Revision, Error>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(8);
        (rx, tokio::spawn(watch(dir.to_path_buf(), timing, tx)))
    }

    fn fleet_in(dir: &Path, clusters: &[&str]) {
        std::fs::create_dir_all(dir.join("clusters")).unwrap();
        for name in clusters {
            std::fs::write(
                dir.join(format!("clusters/{name}.yaml")),
                CLUSTER.replace("c1", name),
            )
            .unwrap();
        }
    }

    #[test]
    fn events_beside_the_directory_are_dropped_before_they_reach_the_task() {
        let concern = Concern::new(PathBuf::from("/srv/current"));
        let of = |p: &str| concern.of(&[PathBuf::from(p)]);
        // The name itself, as the parent's watch reports it, and what is under it.
        assert!(of("/srv/current"));
        assert!(of("/srv/current/clusters/c1.yaml"));
        // A log written beside it.
        assert!(!of("/srv/agent.log"));
        assert!(!of("/srv/currently.txt"));
        assert!(!of("/srv/releases/two/clusters/c1.yaml"));
        // Once the name resolves there, what its target's watch reports concerns it.
        concern.set_target(Some(PathBuf::from("/srv/releases/two")));
        assert!(of("/srv/releases/two/clusters/c1.yaml"));
        assert!(!of("/srv/releases/one/clusters/c1.yaml"));
        assert!(concern.of(&[
            PathBuf::from("/srv/agent.log"),
            PathBuf::from("/srv/current")
        ]));
    }

    #[tokio::test]
    async fn a_burst_of_writes_becomes_one_revision_after_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        fleet_in(dir.path(), &["c1"]);
        let (mut rx, task) = watching(dir.path(), EVENTS_ONLY);
        let first = next(&mut rx).await.unwrap();
        assert!(first.tree.files.contains_key("clusters/c1.yaml"));

        // A partial write followed quickly by the complete one.
        let path = dir.path().join("clusters/c2.yaml");
        std::fs::write(&path, "apiVersion: fleet.hops").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, CLUSTER.replace("c1", "c2")).unwrap();
        let second = next(&mut rx).await.unwrap();
        assert_ne!(second.id, first.id);
        assert!(fleet_core::fleetdir::load(&second.tree).fleet.is_some());
        // No third revision: the partial file was never read on its own.
        assert!(tokio::time::timeout(Duration::from_millis(800), rx.recv())
            .await
            .is_err());
        task.abort();
    }

    #[tokio::test]
    async fn a_checkout_of_two_thousand_files_is_read_whole_once_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        fleet_in(dir.path(), &["c1"]);
        let (mut rx, task) = watching(dir.path(), EVENTS_ONLY);
        next(&mut rx).await.unwrap();
        // Thousands of events, passed on as "something changed", never queued one by one:
        // none of them is lost for it. (A stall of the machine longer than the settle time
        // may show a part of the checkout first.)
        let names: Vec<String> = (0..2000).map(|i| format!("c{i:04}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        fleet_in(dir.path(), &names);
        let mut files = 0;
        while files < 2001 {
            files = next(&mut rx).await.unwrap().tree.files.len();
        }
        assert_eq!(files, 2001, "every file written is read");
        assert!(tokio::time::timeout(Duration::from_millis(800), rx.recv())
            .await
            .is_err());
        task.abort();
    }

    #[tokio::test]
    async fn a_directory_deleted_and_created_again_is_followed_by_its_events() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fleet");
        fleet_in(&dir, &["c1"]);
        let (mut rx, task) = watching(&dir, EVENTS_ONLY);
        let first = next(&mut rx).await.unwrap();

        std::fs::remove_dir_all(&dir).unwrap();
        let gone = next(&mut rx).await.unwrap_err();
        assert!(
            gone.to_string().contains("cannot open fleet directory"),
            "{gone}"
        );
        // Back as it was: sent again, so the reader knows the error is over.
        fleet_in(&dir, &["c1"]);
        assert_eq!(next(&mut rx).await.unwrap().id, first.id);
        // And its new inode is watched: a change inside is seen.
        fleet_in(&dir, &["c2"]);
        let changed = next(&mut rx).await.unwrap();
        assert!(changed.tree.files.contains_key("clusters/c2.yaml"));
        task.abort();
    }

    #[tokio::test]
    async fn a_symlink_pointed_elsewhere_is_followed_to_its_new_target() {
        let root = tempfile::tempdir().unwrap();
        let (one, two) = (root.path().join("one"), root.path().join("two"));
        fleet_in(&one, &["c1"]);
        fleet_in(&two, &["c1", "c2"]);
        let current = root.path().join("current");
        std::os::unix::fs::symlink(&one, &current).unwrap();
        let (mut rx, task) = watching(&current, EVENTS_ONLY);
        assert_eq!(next(&mut rx).await.unwrap().tree.files.len(), 1);

        // `ln -sfn two current` done atomically: a new link renamed over the old one.
        let staged = root.path().join(".current.new");
        std::os::unix::fs::symlink(&two, &staged).unwrap();
        std::fs::rename(&staged, &current).unwrap();
        assert_eq!(next(&mut rx).await.unwrap().tree.files.len(), 2);
        // The old target is no longer what counts; the new one is.
        fleet_in(&one, &["c3"]);
        fleet_in(&two, &["c4"]);
        let changed = next(&mut rx).await.unwrap();
        assert!(changed.tree.files.contains_key("clusters/c4.yaml"));
        assert!(!changed.tree.files.contains_key("clusters/c3.yaml"));
        task.abort();
    }

    #[tokio::test]
    async fn a_parent_folder_replaced_is_picked_up_by_the_re_check_and_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("releases");
        let dir = parent.join("current");
        fleet_in(&dir, &["c1"]);
        let timing = Timing {
            settle: Duration::from_millis(100),
            recheck: Duration::from_millis(300),
        };
        let (mut rx, task) = watching(&dir, timing);
        assert!(next(&mut rx).await.is_ok());
        std::fs::remove_dir_all(&parent).unwrap();
        assert!(next(&mut rx).await.is_err());
        // Nothing watches the grandparent: the re-check sees the new parent and directory.
        fleet_in(&dir, &["c1", "c2"]);
        assert_eq!(next(&mut rx).await.unwrap().tree.files.len(), 2);
        task.abort();
    }

    #[tokio::test]
    async fn a_change_no_event_reports_is_read_at_the_re_check() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("fleet");
        fleet_in(&dir, &["c1"]);
        // The same file under a second name outside the fleet: a write through it changes
        // the fleet's file without any event on the fleet directory.
        let elsewhere = root.path().join("c1.yaml");
        std::fs::hard_link(dir.join("clusters/c1.yaml"), &elsewhere).unwrap();
        let timing = Timing {
            settle: Duration::from_millis(100),
            recheck: Duration::from_millis(300),
        };
        let (mut rx, task) = watching(&dir, timing);
        let first = next(&mut rx).await.unwrap();
        // Re-checks that find nothing changed send nothing.
        assert!(tokio::time::timeout(Duration::from_millis(700), rx.recv())
            .await
            .is_err());
        std::fs::write(&elsewhere, CLUSTER.replace("c1.yaml", "c1-new.yaml")).unwrap();
        let changed = next(&mut rx).await.unwrap();
        assert_ne!(changed.id, first.id);
        assert!(
            String::from_utf8_lossy(&changed.tree.files["clusters/c1.yaml"])
                .contains("c1-new.yaml")
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_directory_missing_at_start_is_reported_once_and_read_when_it_appears() {
        let root = tempfile::tempdir().unwrap();
        // Not even the parent exists: only the re-check can see it arrive.
        let dir = root.path().join("later/fleet");
        let timing = Timing {
            settle: Duration::from_millis(100),
            recheck: Duration::from_millis(200),
        };
        let (mut rx, task) = watching(&dir, timing);
        assert!(next(&mut rx).await.is_err());
        // The same error is not repeated at every re-check.
        assert!(tokio::time::timeout(Duration::from_millis(700), rx.recv())
            .await
            .is_err());
        fleet_in(&dir, &["c1"]);
        assert!(next(&mut rx).await.is_ok());
        task.abort();
    }
}
