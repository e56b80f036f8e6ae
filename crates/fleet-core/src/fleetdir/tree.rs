//! The files of one revision of a fleet directory, read from disk or from Git into memory,
//! so that loading is a pure function of their bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::model::document::{self, MAX_FILE_BYTES};
use crate::model::Diagnostic;

/// Upper bound on the files of one revision; a fleet of thousands of clusters fits easily,
/// and a runaway tree is refused instead of exhausting memory.
pub const MAX_FILES: usize = 100_000;

/// Relative path (with `/` separators) to contents, for the files the loader reads:
/// `fleet.yaml`, `clusters/*.yaml` and `claims/**/*.yaml` (`.yml` too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTree {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Problems met while reading (unreadable files, links out of the tree).
    pub problems: Vec<Diagnostic>,
}

/// Why a fleet directory cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: cannot open fleet directory: {source}", .path.display())]
    CannotOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: more than {MAX_FILES} fleet files", .0.display())]
    TooManyFiles(PathBuf),
}

impl FileTree {
    /// Whether a relative path is one the loader reads.
    pub fn is_fleet_path(path: &str) -> bool {
        let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
        let hidden = path.split('/').any(|part| part.starts_with('.'));
        if !yaml || hidden {
            return false;
        }
        match path.split_once('/') {
            None => path == "fleet.yaml" || path == "fleet.yml",
            Some(("clusters", rest)) => !rest.contains('/'),
            Some(("claims", _)) => true,
            Some(_) => false,
        }
    }

    pub fn insert(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), contents.into());
    }

    /// Reads the fleet files under `root`. Symbolic links are followed only while they stay
    /// inside `root`, so a fleet repository cannot make the agent read files outside it.
    pub fn from_dir(root: &Path) -> Result<FileTree, OpenError> {
        Self::from_dir_stamped(root).map(|(tree, _)| tree)
    }

    /// [`FileTree::from_dir`], with the stamp of what it read taken in the same walk (each
    /// file's just before reading it, so that a write during the read moves the next
    /// stamp); `None` when a file could not be read (an I/O error, a size over the limit),
    /// as it may read differently next time without any stamp moving.
    pub fn from_dir_stamped(root: &Path) -> Result<(FileTree, Option<DirStamp>), OpenError> {
        let mut tree = FileTree::default();
        let mut stamp = Stamper::default();
        let mut unread = false;
        walk(root, &mut tree, |tree, path, relative, metadata| {
            stamp.file(&relative, metadata);
            unread |= !tree.read_file(path, relative, metadata.len());
        })?;
        let stamp = (!unread).then(|| stamp.finish(&tree.problems));
        Ok((tree, stamp))
    }

    /// What [`FileTree::from_dir`] would read, summed up without reading it: each fleet
    /// file's path, size, times and inode (a link's target's), and the problems met. Two
    /// equal stamps mean the files were not written, replaced or renamed in between (a
    /// write moves the change time, which nobody can set back), so a re-check that finds
    /// the stamp unchanged need not read and hash every file again.
    pub fn stamp_dir(root: &Path) -> Result<DirStamp, OpenError> {
        let mut tree = FileTree::default();
        let mut stamp = Stamper::default();
        walk(root, &mut tree, |_, _, relative, metadata| {
            stamp.file(&relative, metadata)
        })?;
        Ok(stamp.finish(&tree.problems))
    }
}

/// A summary of a fleet directory's files as the file system describes them
/// ([`FileTree::stamp_dir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirStamp(u64);

/// Builds a [`DirStamp`] file by file, in the walk's order.
#[derive(Default)]
struct Stamper(std::collections::hash_map::DefaultHasher);

impl Stamper {
    fn file(&mut self, relative: &str, m: &fs::Metadata) {
        use std::hash::Hash;
        use std::os::unix::fs::MetadataExt;
        relative.hash(&mut self.0);
        (m.len(), m.dev(), m.ino(), m.mode()).hash(&mut self.0);
        (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(&mut self.0);
    }

    fn finish(mut self, problems: &[Diagnostic]) -> DirStamp {
        use std::hash::{Hash, Hasher};
        for problem in problems {
            problem.to_string().hash(&mut self.0);
        }
        DirStamp(self.0.finish())
    }
}

/// Walks the fleet files under `root` as the loader sees them, handing each regular fleet
/// file to `file` and recording in `tree` the problems met and the entries skipped.
fn walk(
    root: &Path,
    tree: &mut FileTree,
    mut file: impl FnMut(&mut FileTree, &Path, String, &fs::Metadata),
) -> Result<(), OpenError> {
    let canonical_root = fs::canonicalize(root).map_err(|source| OpenError::CannotOpen {
        path: root.to_path_buf(),
        source,
    })?;
    if !canonical_root.is_dir() {
        return Err(OpenError::NotADirectory(root.to_path_buf()));
    }
    let mut files = 0usize;
    let mut pending: Vec<(PathBuf, String)> = vec![(canonical_root.clone(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tree.problems.push(Diagnostic::file(
                    display_dir(&prefix),
                    format!("cannot read directory: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let path = entry.path();
            let Some(metadata) = tree.resolve(&canonical_root, &path, &relative) else {
                continue;
            };
            if metadata.is_dir() {
                if relative == "clusters" || relative == "claims" || relative.starts_with("claims/")
                {
                    pending.push((path, format!("{relative}/")));
                } else if relative.starts_with("clusters/") {
                    tree.skipped(
                        relative,
                        "directory skipped: Cluster files are read from clusters/ itself, not from its subdirectories",
                    );
                }
            } else if !FileTree::is_fleet_path(&relative) {
                if let Some(reason) = skip_reason(&relative) {
                    tree.skipped(relative, reason);
                }
            } else if !metadata.is_file() {
                tree.skipped(
                    relative,
                    format!("not a regular file ({}); skipped", file_kind(&metadata)),
                );
            } else {
                files += 1;
                if files > MAX_FILES {
                    return Err(OpenError::TooManyFiles(root.to_path_buf()));
                }
                file(tree, &path, relative, &metadata);
            }
        }
    }
    Ok(())
}

impl FileTree {
    /// Follows `path` if it is a link, refusing targets outside the root.
    fn resolve(&mut self, root: &Path, path: &Path, relative: &str) -> Option<fs::Metadata> {
        let link = fs::symlink_metadata(path).ok()?;
        if !link.file_type().is_symlink() {
            return Some(link);
        }
        match fs::canonicalize(path) {
            Ok(target) if target.starts_with(root) => fs::metadata(&target).ok(),
            Ok(_) => {
                if Self::is_fleet_path(relative) || !relative.contains('.') {
                    self.problems.push(Diagnostic::file(
                        relative,
                        "symbolic link points outside the fleet directory; refusing to follow it",
                    ));
                }
                None
            }
            Err(e) => {
                self.problems.push(Diagnostic::file(
                    relative,
                    format!("broken symbolic link: {e}"),
                ));
                None
            }
        }
    }

    /// A file or directory the loader will not read, reported so that nobody wonders
    /// why what they wrote has no effect.
    fn skipped(&mut self, relative: String, reason: impl std::fmt::Display) {
        self.problems
            .push(Diagnostic::file(relative, reason).warning());
    }

    /// Reads one file into the tree; `false`, with the problem recorded, when it could not.
    fn read_file(&mut self, path: &Path, relative: String, len: u64) -> bool {
        if len > MAX_FILE_BYTES as u64 {
            // Refused unread, with the size the file has rather than what a capped read
            // would see.
            self.problems
                .push(Diagnostic::file(relative, document::too_large(len)));
            return false;
        }
        // Read at most one byte past the limit, in case the file grew since its size was
        // taken: enough for the loader to refuse it.
        let limit = MAX_FILE_BYTES as u64 + 1;
        let result = fs::File::open(path).and_then(|f| {
            use std::io::Read;
            let mut buf = Vec::with_capacity(len.min(limit) as usize);
            f.take(limit).read_to_end(&mut buf)?;
            Ok(buf)
        });
        match result {
            Ok(bytes) => {
                self.files.insert(relative, bytes);
                true
            }
            Err(e) => {
                self.problems
                    .push(Diagnostic::file(relative, format!("cannot read file: {e}")));
                false
            }
        }
    }
}

/// Why a file the loader does not read deserves a word: it sits where fleet files live
/// and looks meant as one. `None` for the rest of a repository (README.md, CI files).
fn skip_reason(relative: &str) -> Option<String> {
    let in_fleet_dir = relative.starts_with("clusters/") || relative.starts_with("claims/");
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let lower = name.to_ascii_lowercase();
    if relative.starts_with("clusters/") && relative.matches('/').count() > 1 {
        // Inside a subdirectory of clusters/, reported once for the directory.
        return None;
    }
    if !in_fleet_dir && !lower.starts_with("fleet.") {
        return None;
    }
    Some(
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            "skipped: only files ending in .yaml or .yml, in lowercase, are read"
        } else if lower.ends_with(".json") {
            "skipped: fleet files are YAML; only files ending in .yaml or .yml are read"
        } else if !in_fleet_dir {
            return None;
        } else {
            "skipped: only files ending in .yaml or .yml are read"
        }
        .to_string(),
    )
}

/// What a file that is not a regular file is, for the warning that skips it.
fn file_kind(metadata: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "an unknown kind of file"
    }
}

fn display_dir(prefix: &str) -> String {
    if prefix.is_empty() {
        ".".to_string()
    } else {
        prefix.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fleet_paths_are_read() {
        for yes in [
            "fleet.yaml",
            "fleet.yml",
            "clusters/a.yaml",
            "claims/a.yml",
            "claims/team/x/a.yaml",
        ] {
            assert!(FileTree::is_fleet_path(yes), "{yes}");
        }
        for no in [
            "README.md",
            "other.yaml",
            "clusters/sub/a.yaml",
            "claims/.hidden.yaml",
            "claims/.git/x.yaml",
            "claims/a.json",
        ] {
            assert!(!FileTree::is_fleet_path(no), "{no}");
        }
    }

    /// Longer than a coarse file-system clock tick, so that a write after it gets a later
    /// change time even where timestamps are not fine-grained.
    fn tick() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    /// A fleet directory with one Cluster file, `clusters/a.yaml`.
    fn one_cluster() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("clusters")).unwrap();
        fs::write(root.path().join("clusters/a.yaml"), "kind: Cluster\n").unwrap();
        root
    }

    #[test]
    fn a_stamp_moves_with_every_change_a_read_could_see_and_not_with_reads() {
        let root = one_cluster();
        let dir = root.path();
        fs::write(dir.join("README.md"), "not read\n").unwrap();
        let stamp = || FileTree::stamp_dir(dir).unwrap();
        let first = stamp();
        FileTree::from_dir(dir).unwrap();
        assert_eq!(stamp(), first, "reading changes nothing");
        fs::write(dir.join("README.md"), "still not read\n").unwrap();
        assert_eq!(stamp(), first, "a file the loader skips is not stamped");

        // The same bytes written again, as a checkout does.
        tick();
        fs::write(dir.join("clusters/a.yaml"), "kind: Cluster\n").unwrap();
        let rewritten = stamp();
        assert_ne!(rewritten, first);
        // Replaced by rename, with the same size.
        tick();
        fs::write(dir.join("clusters/.a.new"), "kind: Clustex\n").unwrap();
        fs::rename(dir.join("clusters/.a.new"), dir.join("clusters/a.yaml")).unwrap();
        let replaced = stamp();
        assert_ne!(replaced, rewritten);
        // Made unreadable (only its change time moves).
        tick();
        let mut mode = fs::metadata(dir.join("clusters/a.yaml"))
            .unwrap()
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o000);
        fs::set_permissions(dir.join("clusters/a.yaml"), mode).unwrap();
        let hidden = stamp();
        assert_ne!(hidden, replaced);
        // Another file, and a link going bad.
        fs::write(dir.join("clusters/b.yaml"), "kind: Cluster\n").unwrap();
        let added = stamp();
        assert_ne!(added, hidden);
        std::os::unix::fs::symlink(dir.join("nowhere.yaml"), dir.join("clusters/c.yaml")).unwrap();
        assert_ne!(
            stamp(),
            added,
            "a broken link is a problem the read would report"
        );
    }

    #[test]
    fn a_read_stamps_what_it_read_only_when_every_file_could_be_read() {
        let root = one_cluster();
        let dir = root.path();
        fs::create_dir_all(dir.join("clusters/sub")).unwrap();
        let (tree, stamp) = FileTree::from_dir_stamped(dir).unwrap();
        assert_eq!(tree.problems.len(), 1, "the skipped subdirectory");
        // The same as a re-check takes, or every re-check would read again.
        assert_eq!(stamp, Some(FileTree::stamp_dir(dir).unwrap()));
        let big = vec![b'#'; MAX_FILE_BYTES + 1];
        fs::write(dir.join("clusters/big.yaml"), big).unwrap();
        let (tree, stamp) = FileTree::from_dir_stamped(dir).unwrap();
        assert_eq!(stamp, None, "{:?}", tree.problems);
    }

    #[test]
    fn links_out_of_the_tree_are_reported_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yaml"), "kind: Psql\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("claims")).unwrap();
        std::fs::write(root.path().join("claims/ok.yaml"), "kind: Psql\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            root.path().join("claims/evil.yaml"),
        )
        .unwrap();
        let tree = FileTree::from_dir(root.path()).unwrap();
        assert_eq!(
            tree.files.keys().collect::<Vec<_>>(),
            vec!["claims/ok.yaml"]
        );
        assert_eq!(tree.problems.len(), 1);
        assert_eq!(tree.problems[0].file, "claims/evil.yaml");
    }

    #[test]
    fn every_file_left_unread_where_fleet_files_live_is_a_warning_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        for dir in ["clusters/sub", "claims/team"] {
            std::fs::create_dir_all(at(dir)).unwrap();
        }
        for file in [
            "clusters/a.yaml",
            "clusters/b.json",
            "clusters/c.YAML",
            "clusters/sub/x.yaml",
            "claims/team/d.Yml",
            "claims/notes.txt",
            "fleet.json",
            "README.md",
        ] {
            std::fs::write(at(file), "kind: Cluster\n").unwrap();
        }
        let fifo = std::process::Command::new("mkfifo")
            .arg(at("claims/pipe.yaml"))
            .status();
        let tree = FileTree::from_dir(root.path()).unwrap();
        assert_eq!(
            tree.files.keys().collect::<Vec<_>>(),
            vec!["clusters/a.yaml"]
        );
        let mut warned: Vec<_> = tree
            .problems
            .iter()
            .inspect(|d| assert!(!d.is_error(), "{d}"))
            .map(|d| d.file.as_str())
            .collect();
        warned.sort();
        let mut expected = vec![
            "claims/notes.txt",
            "claims/team/d.Yml",
            "clusters/b.json",
            "clusters/c.YAML",
            "clusters/sub",
            "fleet.json",
        ];
        if fifo.is_ok_and(|s| s.success()) {
            expected.insert(1, "claims/pipe.yaml");
        }
        assert_eq!(warned, expected);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_with_its_real_size() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("claims")).unwrap();
        let size = MAX_FILE_BYTES + 5000;
        std::fs::write(root.path().join("claims/big.yaml"), vec![b'#'; size]).unwrap();
        let tree = FileTree::from_dir(root.path()).unwrap();
        assert!(tree.files.is_empty());
        assert_eq!(
            tree.problems[0].to_string(),
            format!(
                "claims/big.yaml: file is {size} bytes, larger than the limit of 1048576 bytes"
            )
        );
    }
}
