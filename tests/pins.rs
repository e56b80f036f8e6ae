//! Version pins through the command line: `render` applies override > fleet pin > built-in
//! default per chart, and `validate` warns (exit 0) on a pin outside `knownVersions`, and
//! errors on a pin that is not a version.

use std::path::Path;
use std::process::{Command, Output};

use fleet_core::model::fleet::DriftPolicy;
use fleet_core::testing::{claim, cluster, fleet, Fleet, FleetFiles};
use serde_json::Value;

/// Three clusters (dev, edge, prod), one claim each, and `settings` as `fleet.yaml`.
fn fleet_dir(settings: Fleet) -> tempfile::TempDir {
    let mut files = FleetFiles::new().with(&settings);
    for (name, labels) in [
        ("dev-1", &[("env", "dev")][..]),
        ("edge-1", &[("env", "prod"), ("tier", "edge")][..]),
        ("prod-1", &[("env", "prod")][..]),
    ] {
        let cluster = labels.iter().fold(cluster(name), |c, (k, v)| c.label(k, v));
        files.add(&cluster);
        files.add(&claim("psql", name));
    }
    test_support::files::fleet_dir(&files)
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(test_support::binary())
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

/// (stackgres, atlas) chart versions rendered for each cluster.
fn versions(dir: &Path) -> Vec<(String, String, String)> {
    let out = run(&["render", "-o", "json"], dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    rendered
        .iter()
        .map(|(cluster, objects)| {
            let version = |chart: &str| {
                objects
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["spec"]["forProvider"]["chart"]["name"] == chart)
                    .map(|o| {
                        o["spec"]["forProvider"]["chart"]["version"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .unwrap()
            };
            (
                cluster.clone(),
                version("stackgres-operator"),
                version("atlas-operator"),
            )
        })
        .collect()
}

#[test]
fn the_first_matching_override_wins_over_the_fleet_pin_which_wins_over_the_default() {
    let dir = fleet_dir(
        fleet("main")
            .pin("stackgres-operator", "1.18.5")
            .override_pins(
                &[("tier", "edge")],
                &[
                    ("stackgres-operator", "1.17.0"),
                    ("atlas-operator", "0.7.0"),
                ],
            )
            .override_pins(&[("env", "prod")], &[("atlas-operator", "0.7.24")])
            .override_pins(&[("env", "dev")], &[("atlas-operator", "0.8.0")]),
    );
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        versions(dir.path()),
        vec![
            // The dev override pins Atlas only: StackGres falls to the fleet pin.
            s("dev-1", "1.18.5", "0.8.0"),
            // edge-1 is prod too, but the edge override comes first and wins whole.
            s("edge-1", "1.17.0", "0.7.0"),
            s("prod-1", "1.18.5", "0.7.24"),
        ]
    );
    let defaults = fleet_dir(fleet("main").drift(DriftPolicy::Correct));
    assert!(versions(defaults.path())
        .iter()
        .all(|(_, sg, atlas)| sg == "1.18.4" && atlas == "0.7.23"));
}

#[test]
fn a_pin_outside_known_versions_is_a_warning_and_validate_still_passes() {
    let dir = fleet_dir(
        fleet("main")
            .pin("stackgres-operator", "1.18.9")
            .override_pins(&[("env", "dev")], &[("atlas-operator", "0.9.0")])
            .known_versions("stackgres-operator", &["1.18.4", "1.19.0"])
            .known_versions("atlas-operator", &["0.7.23"]),
    );
    let out = run(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("fleet.yaml:19:5: document 1: spec.pins.stackgres-operator: warning: 1.18.9 is not among the known versions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.overrides[0].pins.atlas-operator: warning: 0.9.0"),
        "{stderr}"
    );
    // A warning does not stop the pin from being rendered.
    assert_eq!(versions(dir.path())[0].1, "1.18.9");
}

#[test]
fn a_pin_that_is_not_a_version_is_an_error() {
    let dir =
        fleet_dir(fleet("main").override_pins(&[("env", "dev")], &[("atlas-operator", "latest")]));
    let out = run(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.overrides[0].pins.atlas-operator"),
        "{stderr}"
    );
}
