//! The bad-input corpus: each file in `tests/bad-input/cases/` is dropped into a copy of the
//! valid fleet in `tests/bad-input/base/` at the path its `# target:` line names; then
//! `psql-fleet validate` must exit 1, without a panic, printing every `# expect:` line.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: String,
    target: String,
    expected: Vec<String>,
    contents: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let dir = common::root().join("tests/bad-input/cases");
    let mut cases: Vec<Case> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let contents = fs::read(&path).unwrap();
            // Headers are ASCII even in the files whose body is deliberately not UTF-8.
            let header = String::from_utf8_lossy(&contents).into_owned();
            let field = |key: &str| -> Vec<String> {
                header
                    .lines()
                    .filter_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
                    .collect()
            };
            Case {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                target: field("# target:")
                    .pop()
                    .unwrap_or_else(|| panic!("{}: no # target:", path.display())),
                expected: field("# expect:"),
                contents,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn fleet_with(case: &Case) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    copy_dir(&common::root().join("tests/bad-input/base"), &fleet);
    let target = fleet.join(&case.target);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fs::write(target, &case.contents).unwrap();
    (tmp, fleet)
}

#[test]
fn the_base_fleet_is_valid() {
    let out = Command::new(common::binary())
        .args(["validate"])
        .arg(common::root().join("tests/bad-input/base"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_bad_input_gives_its_documented_error_and_exit_code_1() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (_tmp, fleet) = fleet_with(case);
        let out = Command::new(common::binary())
            .arg("validate")
            .arg(&fleet)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if std::env::var_os("BAD_INPUT_SHOW").is_some() {
            eprintln!("== {}\n{stderr}", case.name);
        }
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, expected 1\n{stderr}",
                case.name,
                out.status.code()
            ));
        }
        if stderr.contains("panicked") {
            failures.push(format!("{}: panicked\n{stderr}", case.name));
        }
        if case.expected.is_empty() {
            failures.push(format!("{}: no # expect: line", case.name));
        }
        for line in &case.expected {
            if !stderr.lines().any(|l| l == line) {
                failures.push(format!(
                    "{}: missing line\n  {line}\ngot:\n{stderr}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_fleet_renders_nothing() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "claim-unknown-spec-field")
        .unwrap();
    let (_tmp, fleet) = fleet_with(&case);
    let out = Command::new(common::binary())
        .arg("render")
        .arg(&fleet)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "rendered despite errors");
}
