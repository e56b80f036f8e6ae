//! Fleets built with `fleet_core::testing` put on disk: written into a directory (whole
//! files only, so an agent watching it never reads half of one) or committed to a Git
//! repository served to the agent.

use std::path::{Path, PathBuf};

use fleet_core::testing::{Document, FleetFiles};

use crate::git::{git, Daemon};

/// Writes `text` to `path` through a rename of a dot file (which the fleet loader skips),
/// creating the folders it needs, so a reader never sees half of it.
pub fn write_atomic(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = path.file_name().unwrap().to_string_lossy();
    let tmp: PathBuf = path.with_file_name(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Copies the folder `from` to `to`, recursively (a checked-in fleet to edit in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// Writes one document into the fleet directory `dir`, at its path.
pub fn write_doc(dir: &Path, doc: &impl Document) {
    write_atomic(&dir.join(doc.path()), &doc.to_yaml());
}

/// Writes every file of `files` into `dir`.
pub fn write_files(dir: &Path, files: &FleetFiles) {
    for (path, text) in files.files() {
        write_atomic(&dir.join(path), text);
    }
}

/// A fleet directory of its own with `files` in it, for the commands that read one.
pub fn fleet_dir(files: &FleetFiles) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    dir
}

/// A Git working copy on branch `main` (`work`), and the bare repository it pushes to
/// (`fleet.git` under `base`), which [`FleetRepo::serve`] serves over `git://`.
pub struct FleetRepo {
    pub work: PathBuf,
    base: tempfile::TempDir,
    _work: Option<tempfile::TempDir>,
}

impl FleetRepo {
    /// A fresh working copy and bare repository, both empty.
    pub fn new() -> FleetRepo {
        let work = tempfile::tempdir().unwrap();
        let mut repo = FleetRepo::in_dir(work.path());
        repo._work = Some(work);
        repo
    }

    /// `dir` (a fleet directory, perhaps already written) becomes the working copy.
    pub fn in_dir(dir: &Path) -> FleetRepo {
        let base = tempfile::tempdir().unwrap();
        git(
            base.path(),
            &["init", "-q", "--bare", "-b", "main", "fleet.git"],
        );
        git(dir, &["init", "-q", "-b", "main"]);
        FleetRepo {
            work: dir.to_path_buf(),
            base,
            _work: None,
        }
    }

    /// The bare repository.
    pub fn bare(&self) -> PathBuf {
        self.base.path().join("fleet.git")
    }

    /// Its folder, as a `git daemon` base path.
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// The bare repository's `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// Writes `files` into the working copy (nothing committed yet).
    pub fn write(&self, files: &FleetFiles) {
        write_files(&self.work, files);
    }

    /// Commits everything in the working copy, additions and removals alike, and pushes it;
    /// returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        self.push(&[]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// [`FleetRepo::commit`], signed with the key the working copy is set to sign with
    /// (see `signing::SigningKey::use_in`).
    pub fn commit_signed(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-S", "-m", message]);
        self.push(&[]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Tags HEAD as `name` (annotated and signed when `signed`, else lightweight) and
    /// pushes the tag, moving it if it exists.
    pub fn tag(&self, name: &str, signed: bool) {
        if signed {
            git(&self.work, &["tag", "-f", "-s", "-m", name, name]);
        } else {
            git(&self.work, &["tag", "-f", name]);
        }
        let bare = self.bare().display().to_string();
        git(
            &self.work,
            &["push", "-q", "--force", &bare, &format!("refs/tags/{name}")],
        );
    }

    /// Replaces the last commit with the working copy as it is now and force-pushes it: a
    /// rewritten history.
    pub fn amend(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--amend", "-m", message]);
        self.push(&["--force"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn push(&self, flags: &[&str]) {
        let bare = self.bare().display().to_string();
        let mut args = vec!["push", "-q"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&bare, "main"]);
        git(&self.work, &args);
    }

    /// A `git daemon` serving the bare repository on a free loopback port.
    pub fn serve(&self) -> Daemon {
        Daemon::start(self.base.path())
    }
}

impl Default for FleetRepo {
    fn default() -> Self {
        FleetRepo::new()
    }
}

/// The `git://` URL of the repository a [`FleetRepo`]'s daemon serves.
pub fn git_url(daemon: &Daemon) -> String {
    format!("git://127.0.0.1:{}/fleet.git", daemon.port)
}
