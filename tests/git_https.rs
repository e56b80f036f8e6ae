//! The Git source over HTTPS against a real Git server (`git http-backend` behind TLS on
//! loopback) that demands a token: the token is handed over only when asked and never shows
//! in an error, and the remote's certificate is verified against `--git-ca-file`.
//!
//! One test: the CA file is process-wide libgit2 state, so the untrusted case must run
//! before it is set, and nothing else in this binary may use libgit2 meanwhile.

use std::path::Path;

use fleet_core::testing::{cluster, FleetFiles};
use psql_fleet::source::git::{self, Credentials, GitRef, GitSource};
use test_support::files::FleetRepo;
use test_support::git_https::HttpsServer;

const TOKEN: &str = "tok-5ecret-9f31c2";

fn source(url: &str, cache: &Path, token_file: &Path) -> GitSource {
    GitSource {
        url: url.to_string(),
        cache_dir: cache.to_path_buf(),
        reference: GitRef::Branch("main".into()),
        credentials: Credentials::load(Some(token_file)).unwrap(),
    }
}

/// Why a fetch of `url` into `cache` with the token in `token_file` fails.
fn sync_error(url: &str, cache: &Path, token_file: &Path) -> String {
    source(url, cache, token_file)
        .sync()
        .unwrap_err()
        .to_string()
}

/// Commits the `Cluster` document of `name` and pushes it; returns the commit id.
fn push_cluster(repo: &FleetRepo, name: &str) -> String {
    repo.write(&FleetFiles::new().with(&cluster(name)));
    repo.commit(name)
}

#[test]
#[allow(
    unsafe_code,
    reason = "trust_ca_file sets libgit2's process-wide CA; this test is alone in its binary"
)]
fn a_fleet_is_fetched_over_https_with_a_token_and_a_ca_file() {
    let repo = FleetRepo::new();
    let secrets = tempfile::tempdir().unwrap();
    let first = push_cluster(&repo, "c1");

    let server = HttpsServer::start(repo.base(), TOKEN);
    let url = server.url("fleet.git");
    let right = secrets.path().join("right");
    std::fs::write(&right, format!("{TOKEN}\n")).unwrap();
    let wrong = secrets.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let ca_file = secrets.path().join("ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).unwrap();

    // Not yet trusted: the certificate check fails before any credential is sent.
    let cache = tempfile::tempdir().unwrap();
    let err = sync_error(&url, cache.path(), &right);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("certificate is not trusted"), "{err}");
    assert!(err.contains("--git-ca-file"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // A file without a certificate is refused up front.
    let empty = secrets.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    // SAFETY: this test is the only one in the binary, and no fetch is running.
    let err = unsafe { git::trust_ca_file(&empty) }
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty.pem"), "{err}");

    // SAFETY: as above.
    unsafe { git::trust_ca_file(&ca_file) }.unwrap();

    // The wrong token: refused, named by the remote, the token nowhere.
    // Its cache then serves the right token below.
    let cache = tempfile::tempdir().unwrap();
    let err = sync_error(&url, cache.path(), &wrong);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // The right token: the pushed commit, then the next one.
    let s = source(&url, cache.path(), &right);
    let r1 = s.sync().unwrap();
    assert_eq!(r1.id, first);
    assert_eq!(
        r1.tree.files.keys().collect::<Vec<_>>(),
        vec!["clusters/c1.yaml"]
    );
    let second = push_cluster(&repo, "c2");
    let r2 = s.sync().unwrap();
    assert_eq!(r2.id, second);
    assert_eq!(r2.tree.files.len(), 2);

    // User information in the URL is cut from the error.
    let with_user = url.replace("https://", &format!("https://bot:{TOKEN}@"));
    let cache = tempfile::tempdir().unwrap();
    let err = sync_error(
        &with_user.replace("fleet.git", "absent.git"),
        cache.path(),
        &wrong,
    );
    assert!(err.contains("absent.git"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}
