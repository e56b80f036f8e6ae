//! Golden tests: `render --assume-ready` of `fleet/` and `examples/` against the expected
//! objects in `tests/golden/`, object by object. Regenerate deliberately with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff against SPEC part 1.

use test_support as common;

use std::collections::BTreeMap;
use std::fs;

use psql_fleet::cli::render::render_fleet;
use serde_json::Value;

fn check(fleet_dir: &str) {
    let fleet = common::load_fleet(&common::root().join(fleet_dir));
    let rendered = render_fleet(&fleet, None, true);
    let golden_path = common::root().join(format!("tests/golden/{fleet_dir}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&rendered).unwrap() + "\n";
        fs::write(&golden_path, text).unwrap();
    }
    let golden: BTreeMap<String, Vec<Value>> =
        serde_json::from_slice(&fs::read(&golden_path).unwrap()).unwrap();
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        golden.keys().collect::<Vec<_>>(),
        "{fleet_dir}: clusters differ"
    );
    let mut mismatches = Vec::new();
    for (cluster, expected) in &golden {
        let actual = &rendered[cluster];
        let name = |o: &Value| {
            format!(
                "{} {}/{}",
                o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]
            )
        };
        let names = |list: &[Value]| list.iter().map(name).collect::<Vec<_>>();
        if names(actual) != names(expected) {
            mismatches.push(format!(
                "{cluster}: objects {:?}, expected {:?}",
                names(actual),
                names(expected)
            ));
            continue;
        }
        for (a, e) in actual.iter().zip(expected) {
            if a != e {
                mismatches.push(format!(
                    "{cluster}: {} differs\n  rendered: {a}\n  expected: {e}",
                    name(e)
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_example_fleet_renders_exactly_its_golden_objects() {
    check("fleet");
}

#[test]
fn the_examples_render_exactly_their_golden_objects() {
    check("examples");
}

#[test]
fn the_cli_json_output_is_the_golden_file() {
    let out = common::succeed(
        common::psql_fleet(["render", "fleet", "--assume-ready", "-o", "json"])
            .current_dir(common::root()),
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let golden: Value =
        serde_json::from_slice(&fs::read(common::root().join("tests/golden/fleet.json")).unwrap())
            .unwrap();
    assert_eq!(cli, golden);
}

#[test]
fn render_output_is_deterministic_and_sorted() {
    let run = || {
        common::succeed(common::psql_fleet(["render", "fleet"]).current_dir(common::root())).stdout
    };
    let first = run();
    assert_eq!(first, run());
    let text = String::from_utf8(first).unwrap();
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# cluster: "))
        .collect();
    let mut sorted = headers.clone();
    sorted.sort();
    assert_eq!(headers, sorted);
    assert_eq!(headers.len(), 4);
    assert!(
        !text.contains("kind: Usage"),
        "no Usage without --assume-ready"
    );
}
