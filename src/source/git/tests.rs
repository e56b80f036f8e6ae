//! The Git source against real repositories made by the `git` command: through `file://`
//! and through a `git daemon` on loopback.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

const CLUSTER: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {kubeconfig: c1.yaml}\n";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit holding `clusters/c1.yaml`, on branch `main`.
fn repo_with_commit(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("clusters")).unwrap();
    std::fs::write(dir.join("clusters/c1.yaml"), CLUSTER).unwrap();
    std::fs::write(dir.join("README.md"), "not a fleet file").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn commit_file(dir: &Path, path: &str, contents: &str) -> String {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, contents).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", path]);
    git(dir, &["rev-parse", "HEAD"])
}

fn source(url: String, cache: &Path, reference: GitRef) -> GitSource {
    GitSource {
        url,
        cache_dir: cache.to_path_buf(),
        reference,
        credentials: Credentials::default(),
    }
}

#[test]
fn a_branch_is_followed_and_only_fleet_files_are_read() {
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let first = repo_with_commit(work.path());
    let url = format!("file://{}", work.path().display());
    let s = source(url, cache.path(), GitRef::Branch("main".into()));
    let r1 = s.sync().unwrap();
    assert_eq!(r1.id, first);
    assert_eq!(
        r1.tree.files.keys().collect::<Vec<_>>(),
        vec!["clusters/c1.yaml"]
    );
    let second = commit_file(
        work.path(),
        "clusters/c2.yaml",
        &CLUSTER.replace("c1", "c2"),
    );
    let r2 = s.sync().unwrap();
    assert_eq!(r2.id, second);
    assert_eq!(r2.tree.files.len(), 2);
}

#[test]
fn a_tag_and_a_pinned_commit_stay_put_while_the_branch_moves() {
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let first = repo_with_commit(work.path());
    git(work.path(), &["tag", "v1"]);
    commit_file(work.path(), "claims/a.yaml", "kind: Psql\n");
    let url = format!("file://{}", work.path().display());
    let tag = source(url.clone(), cache.path(), GitRef::Tag("v1".into()))
        .sync()
        .unwrap();
    assert_eq!(tag.id, first);
    let pinned = source(url.clone(), cache.path(), GitRef::Commit(first.clone()))
        .sync()
        .unwrap();
    assert_eq!(pinned.id, first);
    assert_eq!(pinned.tree.files.len(), 1);
    let missing = source(url, cache.path(), GitRef::Branch("nope".into())).sync();
    assert!(
        matches!(missing, Err(Error::Fetch { .. } | Error::NotFound { .. })),
        "{missing:?}"
    );
}

#[test]
fn user_information_never_appears_in_messages() {
    assert_eq!(
        redact_url("https://bot:s3cr3t@git.example.invalid/fleet.git"),
        "https://git.example.invalid/fleet.git"
    );
    let c = Credentials {
        username: None,
        token: Some("s3cr3t".into()),
        ssh_key: None,
    };
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

/// A `git daemon` serving `base` on a free loopback port; killed on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `git daemon` runs `git-daemon` as a child that would outlive a kill of the
        // wrapper; start the daemon itself so that drop ends it.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, port }
    }
}

#[test]
fn a_commit_pushed_to_a_git_daemon_is_fetched() {
    let base = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    git(
        base.path(),
        &["init", "-q", "--bare", "-b", "main", "fleet.git"],
    );
    repo_with_commit(work.path());
    let bare = base.path().join("fleet.git");
    git(
        work.path(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let daemon = Daemon::start(base.path());
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let s = source(url, cache.path(), GitRef::Head);
    let r1 = s.sync().unwrap();
    assert_eq!(r1.tree.files.len(), 1);
    let pushed = commit_file(
        work.path(),
        "clusters/c2.yaml",
        &CLUSTER.replace("c1", "c2"),
    );
    git(
        work.path(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let r2 = s.sync().unwrap();
    assert_eq!(r2.id, pushed);
    assert_eq!(r2.tree.files.len(), 2);
}
