//! The container image, as far as a machine without a container engine can check it (no
//! Docker daemon, and no registry to pull the base images from, in CI): the Dockerfile is
//! multi-stage, builds the binary these tests run from the locked sources, runs it as a
//! non-root user on a distroless base, and ships every shared library the binary needs;
//! and the chart's default image is the one `make image` tags.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap()
}

/// The Dockerfile's instructions, continuation lines joined, comments left out.
fn instructions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut line = String::new();
    for raw in read("Dockerfile").lines() {
        let t = raw.trim();
        if t.starts_with('#') || (t.is_empty() && line.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => line.push_str(part),
            None => {
                line.push_str(t);
                if let Some((op, rest)) = line.trim().split_once(char::is_whitespace) {
                    out.push((op.to_uppercase(), rest.trim().to_string()));
                }
                line.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_unprivileged_on_distroless_in_another() {
    let ins = instructions();
    let froms: Vec<&str> = ins
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert_eq!(froms[1], "gcr.io/distroless/cc-debian12:nonroot");
    assert!(
        froms.iter().all(|f| !f.contains(":latest")),
        "base images are pinned to a release: {froms:?}"
    );
    let run = ins
        .iter()
        .find(|(op, _)| op == "RUN")
        .map(|(_, a)| a.as_str())
        .unwrap();
    assert!(
        run.contains("cargo build --release --locked --bin psql-fleet"),
        "{run}"
    );
    let after_final: Vec<&(String, String)> = ins
        .iter()
        .skip_while(|(op, a)| !(op == "FROM" && a == froms[1]))
        .collect();
    assert!(
        after_final.iter().all(|(op, _)| op != "RUN" && op != "ADD"),
        "the final stage only copies: {after_final:?}"
    );
    let user = after_final
        .iter()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a.as_str());
    assert_eq!(user, Some("65532:65532"));
    let entry = after_final
        .iter()
        .find(|(op, _)| op == "ENTRYPOINT")
        .map(|(_, a)| a.as_str());
    assert_eq!(entry, Some(r#"["/usr/local/bin/psql-fleet"]"#));
    // The chart runs the same user the image declares.
    let values = read("charts/psql-fleet/values.yaml");
    assert!(
        values.contains("runAsUser: 65532"),
        "chart values: runAsUser"
    );
}

/// What the locked sources build: `cargo build --locked` refuses a Cargo.lock that does not
/// match Cargo.toml, so the image builds what CI tests.
#[test]
fn the_lock_file_is_current_for_the_locked_build() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--format-version", "1", "--no-deps"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every shared library the binary needs is in distroless's cc image or copied by the
/// Dockerfile; a new one (a -sys crate linking a system library) fails here, not in a pod.
#[test]
fn every_library_the_binary_links_is_in_the_image() {
    // glibc's, libgcc's and OpenSSL 3's, as distroless/cc-debian12 ships them.
    let in_base: BTreeSet<&str> = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libssl.so.3",
        "libcrypto.so.3",
    ]
    .into();
    let dockerfile = read("Dockerfile");
    let Ok(out) = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_psql-fleet"))
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ldd is missing (CI is set)"
        );
        eprintln!("SKIP: no ldd");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|lib| !lib.contains("ld-linux"))
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{text}");
    for lib in needed {
        assert!(
            in_base.contains(lib) || dockerfile.contains(&format!("/usr/lib/{lib}")),
            "{lib} is needed by the binary but neither in distroless/cc nor copied by the Dockerfile:\n{text}"
        );
    }
}

#[test]
fn the_chart_deploys_the_image_make_image_tags() {
    let chart = read("charts/psql-fleet/Chart.yaml");
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"'))
        .unwrap();
    assert_eq!(app_version, env!("CARGO_PKG_VERSION"));
    let values = read("charts/psql-fleet/values.yaml");
    assert!(
        values.contains("  repository: psql-fleet\n"),
        "image.repository"
    );
    assert!(
        values.contains("  tag: \"\"\n"),
        "image.tag defaults to appVersion"
    );
    let makefile = read("Makefile");
    assert!(
        makefile.contains("IMAGE ?= psql-fleet:$(shell sed")
            && makefile.contains("charts/psql-fleet/Chart.yaml"),
        "make image tags psql-fleet:<appVersion>"
    );
}
