//! The Git source against real repositories made by the `git` command: through `file://`
//! and through a `git daemon` on loopback.

use std::path::Path;

use fleet_core::testing::{claim, cluster, Document};

use super::*;

// Shared with the end-to-end tests, which serve a fleet repository the same way.
#[path = "../../../crates/test-support/src/git.rs"]
mod git_repo;

pub(crate) use git_repo::{git, Daemon};

/// A repository with one commit holding `clusters/c1.yaml`, on branch `main`.
fn repo_with_commit(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("clusters")).unwrap();
    std::fs::write(dir.join("clusters/c1.yaml"), cluster("c1").to_yaml()).unwrap();
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
    let second = commit_file(work.path(), "clusters/c2.yaml", &cluster("c2").to_yaml());
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
    commit_file(work.path(), "claims/a.yaml", &claim("a", "c1").to_yaml());
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
        ssh: None,
    };
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

#[test]
fn ssh_urls_without_a_key_and_known_hosts_are_refused_naming_the_flags() {
    for url in [
        "ssh://git@example.invalid/fleet.git",
        "git+ssh://example.invalid/fleet.git",
        "git@example.invalid:org/fleet.git",
    ] {
        let cache = tempfile::tempdir().unwrap();
        let err = source(url.into(), cache.path(), GitRef::Head)
            .sync()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--git-ssh-key"), "{err}");
        assert!(err.contains("--git-known-hosts"), "{err}");
        assert!(err.contains("example.invalid"), "{err}");
        assert!(!err.contains("git@"), "user information shown: {err}");
    }
    let err = check_transport("ssh://:22/fleet.git", &Credentials::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an SSH URL with a host"), "{err}");
    for url in [
        "https://example.invalid/f.git",
        "git://example.invalid/f.git",
        "file:///f",
    ] {
        assert!(
            check_transport(url, &Credentials::default()).is_ok(),
            "{url}"
        );
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
    let pushed = commit_file(work.path(), "clusters/c2.yaml", &cluster("c2").to_yaml());
    git(
        work.path(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let r2 = s.sync().unwrap();
    assert_eq!(r2.id, pushed);
    assert_eq!(r2.tree.files.len(), 2);
}
