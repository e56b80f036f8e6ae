//! A local fleet directory replaced whole, as deploy tools do: deleted and copied back, or
//! a `current` symlink pointed at a new release. While it is gone the last good revision
//! stays served and nothing is deleted; once back, the new content is served. A source
//! that cannot be read at start ends `run` with an error, unless `--wait-for-source`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_core::testing::claim;
use psql_fleet::source::SourceSpec;
use test_support::files::{copy_dir, write_doc};
use test_support::{AgentOptions, Endpoint, SimFleet};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A second claim on the first cluster, in a namespace of its own: the new content.
fn extra(cluster: &str) -> fleet_core::testing::Claim {
    claim("extra", cluster)
        .namespace("extra")
        .install_namespace("extra")
}

/// Waits until the status reports the source unreadable, and checks that the revision
/// served has not moved; returns the error.
async fn wait_unreadable(agent: &Endpoint, served: &str) -> String {
    let report = agent
        .wait_for("the source reported unreadable", |r| {
            r.source.last_error.is_some()
        })
        .await;
    assert_eq!(report.source.revision.as_deref(), Some(served));
    report.source.last_error.unwrap()
}

/// Asserts that the simulator accepted no deletion, on any cluster.
fn assert_nothing_deleted(f: &SimFleet) {
    assert!(f.deletions().is_empty(), "deleted: {:?}", f.deletions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_directory_deleted_and_copied_back_is_followed_and_nothing_is_deleted_meanwhile() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.claim_everywhere();
    f.namespace(&names[0], "extra").await;
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let served = agent.report().await.source.revision.unwrap();

    let kept = tempfile::tempdir().unwrap();
    copy_dir(f.fleet_dir(), kept.path());
    std::fs::remove_dir_all(f.fleet_dir()).unwrap();
    let error = wait_unreadable(&agent, &served).await;
    assert!(error.contains("cannot open fleet directory"), "{error}");
    agent
        .assert_holds_for_passes("nothing deleted while it is gone", &names[0], 2, || async {
            f.deletions().is_empty()
        })
        .await;

    // Copied back, with one claim more.
    write_doc(kept.path(), &extra(&names[0]));
    copy_dir(kept.path(), f.fleet_dir());
    agent.wait_ready(&[(&names[0], 2), (&names[1], 1)]).await;
    let report = agent.report().await;
    assert_ne!(report.source.revision.as_deref(), Some(served.as_str()));
    assert_eq!(report.source.last_error, None);
    assert_nothing_deleted(&f);
    agent.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_back_unchanged_clears_the_error_without_rolling_anything_out() {
    let f = SimFleet::start(1, ms(200)).await;
    let names = f.names();
    f.claim_everywhere();
    let agent = f.start_agent(AgentOptions::default()).await;
    agent.wait_converged(&names, 1).await;
    let served = agent.report().await.source.revision.unwrap();
    let applies = f.applies(&names[0]);

    let kept = tempfile::tempdir().unwrap();
    copy_dir(f.fleet_dir(), kept.path());
    std::fs::remove_dir_all(f.fleet_dir()).unwrap();
    wait_unreadable(&agent, &served).await;
    copy_dir(kept.path(), f.fleet_dir());
    let report = agent
        .wait_for("the error cleared", |r| r.source.last_error.is_none())
        .await;
    assert_eq!(report.source.revision.as_deref(), Some(served.as_str()));
    assert_eq!(f.applies(&names[0]), applies, "nothing applied again");
    assert_nothing_deleted(&f);
    agent.stop().await;
    f.shutdown().await;
}

/// Points the symlink `link` at `target` the way `ln -sfn` on an atomic deploy does: a new
/// link renamed over the old one, so the name never resolves to nothing.
fn repoint(link: &Path, target: &Path) {
    let staged = link.with_file_name(".current.staged");
    std::os::unix::fs::symlink(target, &staged).unwrap();
    std::fs::rename(&staged, link).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_symlink_pointed_at_a_new_release_is_followed() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.claim_everywhere();
    f.namespace(&names[0], "extra").await;
    let releases = tempfile::tempdir().unwrap();
    let (one, two) = (releases.path().join("one"), releases.path().join("two"));
    copy_dir(f.fleet_dir(), &one);
    copy_dir(f.fleet_dir(), &two);
    write_doc(&two, &extra(&names[0]));
    let current = releases.path().join("current");
    std::os::unix::fs::symlink(&one, &current).unwrap();

    let agent = f
        .start_agent(AgentOptions {
            source: Some(SourceSpec::Dir(current.clone())),
            ..AgentOptions::default()
        })
        .await;
    agent.wait_converged(&names, 1).await;
    let served = agent.report().await.source.revision.unwrap();

    repoint(&current, &two);
    agent.wait_ready(&[(&names[0], 2), (&names[1], 1)]).await;
    let report = agent.report().await;
    assert_ne!(report.source.revision.as_deref(), Some(served.as_str()));
    assert_eq!(report.source.source, current.display().to_string());

    // The old release is deleted, as deploy tools clean up: nothing changes.
    std::fs::remove_dir_all(&one).unwrap();
    let now = report.source.revision.unwrap();
    agent
        .assert_holds_for_passes("the new release still served", &names[0], 2, || async {
            agent.report().await.source.revision.as_deref() == Some(now.as_str())
        })
        .await;
    assert_nothing_deleted(&f);
    agent.stop().await;
    f.shutdown().await;
}

/// Runs `psql-fleet run` on `source` and returns its exit status and stderr, failing the
/// test if it is still running after 20 s.
fn run_to_the_end(
    source: impl AsRef<std::ffi::OsStr>,
    scratch: &Path,
) -> (std::process::ExitStatus, String) {
    let mut child = test_support::psql_fleet(["run", "--listen", "127.0.0.1:0"])
        .arg("--source")
        .arg(source)
        .arg("--credentials-dir")
        .arg(scratch)
        .arg("--cache-dir")
        .arg(scratch.join("cache"))
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psql-fleet run on a missing source still runs after 20 s");
        }
        std::thread::sleep(ms(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_on_a_source_missing_at_start_exits_non_zero_with_the_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let missing: PathBuf = scratch.path().join("no-such-fleet");
    let (status, stderr) = run_to_the_end(&missing, scratch.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    let reason = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        reason.contains("cannot read the fleet source at start")
            && reason.contains(&missing.display().to_string())
            && reason.contains("cannot open fleet directory")
            && reason.contains("--wait-for-source"),
        "{reason}"
    );
}

#[test]
fn run_on_a_git_remote_unreachable_at_start_exits_non_zero_with_the_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("git://127.0.0.1:{}/fleet", test_support::free_port());
    let (status, stderr) = run_to_the_end(&url, scratch.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(
            |l| l.starts_with("error: cannot read the fleet source at start")
                && l.contains("127.0.0.1")
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_source_serves_a_clear_status_until_the_directory_appears() {
    let f = SimFleet::start(2, ms(200)).await;
    let names = f.names();
    f.claim_everywhere();
    let later = tempfile::tempdir().unwrap();
    let dir = later.path().join("fleet");
    let agent = f
        .start_agent(AgentOptions {
            source: Some(SourceSpec::Dir(dir.clone())),
            wait_for_source: true,
            ..AgentOptions::default()
        })
        .await;
    let report = agent
        .wait_for("the wait reported", |r| r.source.last_error.is_some())
        .await;
    let error = report.source.last_error.unwrap();
    assert!(
        error.starts_with("waiting for the fleet source: ")
            && error.contains("cannot open fleet directory"),
        "{error}"
    );
    assert_eq!(report.source.revision, None);
    assert!(agent.get("/readyz").await.is_none(), "not ready meanwhile");

    copy_dir(f.fleet_dir(), &dir);
    agent.wait_converged(&names, 1).await;
    assert_eq!(agent.report().await.source.last_error, None);
    assert_nothing_deleted(&f);
    agent.stop().await;
    f.shutdown().await;
}
