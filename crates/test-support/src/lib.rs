//! psql-fleet's one test harness, shared by every integration test and bench.

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

pub mod e2e;
pub mod git;
pub mod git_https;
pub mod harness;
pub mod kubectl;
pub mod sim;
