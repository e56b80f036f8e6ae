//! psql-fleet's one test harness, shared by every integration test and bench.
//!
//! - [`fleet::SimFleet`]: a simulated fleet (in-process simulator, fleet directory) that
//!   documents built with `fleet_core::testing` are put into, and the agent started on it,
//!   in-process or as a child process ([`agent`]: status, metrics and waits on them).
//! - [`wait`]: waiting on conditions with deadlines, and the one bounded "nothing happens"
//!   window.
//! - [`audit`]: the simulator's audit log and stores: what was written, in which order.
//! - [`files`]: fleets written to a directory or committed to a Git repository; [`git`],
//!   [`git_https`] and [`git_ssh`]: Git over `git://`, HTTPS and SSH (a real `sshd`) on
//!   loopback; [`github`]: a fake GitHub API.
//! - [`signing`]: SSH and OpenPGP keys that sign commits and tags through `git` itself.
//! - [`sim`]: a bare simulator and kube-rs clients of its clusters; [`kubectl`]: the real
//!   kubectl against it; [`status`]: judging status reports and metric expositions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a harness fails the test that called it"
)]

use std::path::{Path, PathBuf};

use fleet_core::fleetdir::{self, FileTree, LoadedFleet};

/// The repository root (this crate lives in `crates/test-support`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/crds`, where the real upstream CRDs live; `None` (and a note on stderr) when
/// the checkout has no `../shared` beside it.
pub fn upstream_crds() -> Option<PathBuf> {
    let dir = root().join("../shared/crds");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; upstream CRD checks need ../shared beside the checkout",
            dir.display()
        );
        None
    }
}

/// Loads a fleet directory of the repository, failing the test with every diagnostic.
pub fn load_fleet(dir: &Path) -> LoadedFleet {
    let tree = FileTree::from_dir(dir).unwrap_or_else(|e| panic!("{e}"));
    let outcome = fleetdir::load(&tree);
    let report: Vec<String> = outcome
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    outcome
        .fleet
        .unwrap_or_else(|| panic!("{} does not load:\n{}", dir.display(), report.join("\n")))
}

/// A loopback port free at the time of asking, for a server a test starts (tests run in
/// parallel, so never a fixed one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The psql-fleet binary built beside the running test or bench: Cargo builds a package's
/// binaries before its integration tests and benches, into the folder above their `deps/`.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no profile folder", exe.display()));
    let binary = profile_dir.join("psql-fleet");
    assert!(
        binary.is_file(),
        "{} is not built; run the tests through cargo test",
        binary.display()
    );
    binary
}

/// The psql-fleet binary as a command with `args`, for [`succeed`] or `.output()`.
pub fn psql_fleet<I, S>(args: I) -> std::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = std::process::Command::new(binary());
    command.args(args);
    command
}

/// Runs `command` to its end; fails the test, with what it printed, unless it exits 0.
pub fn succeed(command: &mut std::process::Command) -> std::process::Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub mod agent;
pub mod audit;
pub mod files;
pub mod fleet;
pub mod git;
pub mod git_https;
pub mod git_ssh;
pub mod github;
pub mod kubectl;
pub mod prometheus;
pub mod signing;
pub mod sim;
pub mod status;
pub mod wait;

pub use agent::{Agent, AgentOptions, AgentProcess, Endpoint, ProcessOptions};
pub use fleet::SimFleet;
pub use wait::{
    assert_holds_until, assert_quiet_for, eventually, eventually_within, until, CONVERGE,
};
