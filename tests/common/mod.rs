//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

use psql_fleet::fleetdir::{self, FileTree, LoadedFleet};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// The psql-fleet binary built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_psql-fleet"))
}

/// Runs `git` in `dir` with a fixed identity and fixed dates and no user or system
/// configuration, so the same commits get the same ids on every machine.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
