//! The file-system watcher both watched directories use (the local fleet source and the
//! credentials directory): told of changes only. The agent opens those files itself (every
//! kubeconfig at connect, every fleet file on a read), and a watcher that also asks for
//! opens and closes is woken for each of them: about 42,000 wakes and 0.8 s of CPU at a
//! 10,000-cluster cold start with notify's default, which asks inotify for `IN_OPEN`.
//! Asked for the core kinds only, the kernel never queues those events. A folder watched
//! only for an entry's name (the fleet directory's parent) is asked for names alone, so
//! that a log written beside the directory (about two writes a cluster at a cold start)
//! wakes nothing either.

use notify::{Config, EventHandler, EventKindMask, RecommendedWatcher, Watcher};

/// A watcher that hands `handler` creations, removals and modifications (data, metadata,
/// names), never accesses.
pub fn changes_only<F: EventHandler>(handler: F) -> notify::Result<RecommendedWatcher> {
    RecommendedWatcher::new(
        handler,
        Config::default().with_event_kinds(EventKindMask::CORE),
    )
}

/// A watcher that hands `handler` only what changes a folder's names: entries created,
/// removed or renamed, and the watched folder itself moved.
pub fn names_only<F: EventHandler>(handler: F) -> notify::Result<RecommendedWatcher> {
    RecommendedWatcher::new(
        handler,
        Config::default().with_event_kinds(
            EventKindMask::CREATE | EventKindMask::REMOVE | EventKindMask::MODIFY_NAME,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::{EventKind, RecursiveMode};
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    type Events = mpsc::Receiver<notify::Result<notify::Event>>;

    /// The events after those already queued, up to a quiet spell.
    fn drain(rx: &Events) -> Vec<notify::Event> {
        let mut seen = Vec::new();
        while let Ok(event) = rx.recv_timeout(Duration::from_millis(300)) {
            seen.push(event.unwrap());
        }
        seen
    }

    /// `dir` watched through the watcher `make` builds, and its events.
    fn watching(
        make: fn(mpsc::Sender<notify::Result<notify::Event>>) -> notify::Result<RecommendedWatcher>,
        dir: &Path,
        mode: RecursiveMode,
    ) -> (RecommendedWatcher, Events) {
        let (tx, rx) = mpsc::channel();
        let mut watcher = make(tx).unwrap();
        watcher.watch(dir, mode).unwrap();
        (watcher, rx)
    }

    fn names(events: &[notify::Event]) -> Vec<&Path> {
        events
            .iter()
            .flat_map(|e| e.paths.iter().map(|p| p.as_path()))
            .collect()
    }

    #[test]
    fn reading_a_file_is_no_event_and_writing_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubeconfig");
        std::fs::write(&file, "first").unwrap();
        let (_watcher, rx) = watching(changes_only, dir.path(), RecursiveMode::Recursive);

        for _ in 0..3 {
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "first");
        }
        std::fs::write(&file, "second").unwrap();

        // The first event is the write's: the reads before it queued nothing.
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert!(
            matches!(first.kind, EventKind::Modify(_) | EventKind::Create(_)),
            "{first:?}"
        );
        for event in drain(&rx) {
            assert!(!matches!(event.kind, EventKind::Access(_)), "{event:?}");
        }
    }

    #[test]
    fn a_folder_watched_for_names_is_told_of_a_rename_and_not_of_a_write() {
        let parent = tempfile::tempdir().unwrap();
        let log = parent.path().join("agent.log");
        std::fs::write(&log, "").unwrap();
        let (_watcher, rx) = watching(names_only, parent.path(), RecursiveMode::NonRecursive);

        for line in 0..5 {
            std::fs::write(&log, format!("line {line}\n")).unwrap();
        }
        assert_eq!(names(&drain(&rx)), Vec::<&Path>::new());

        // How `ln -sfn new current` replaces a fleet: a new link renamed over the name.
        let (fleet, next) = (parent.path().join("fleet"), parent.path().join("fleet.new"));
        std::os::unix::fs::symlink(parent.path(), &next).unwrap();
        std::fs::rename(&next, &fleet).unwrap();
        let seen = drain(&rx);
        assert!(names(&seen).contains(&fleet.as_path()), "{seen:?}");
    }
}
