//! Version pins through the command line: `render` applies override > fleet pin > built-in
//! default per chart, and `validate` warns (exit 0) on a pin outside `knownVersions`, and
//! errors on a pin that is not a version.

use test_support as common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn write(dir: &Path, path: &str, text: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

/// Three clusters (dev, edge, prod), one claim each, and `fleet_spec` as the Fleet's spec.
fn fleet(fleet_spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fleet.yaml",
        &format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {{name: main}}\nspec:\n{fleet_spec}"),
    );
    for (name, labels) in [
        ("dev-1", "{env: dev}"),
        ("edge-1", "{env: prod, tier: edge}"),
        ("prod-1", "{env: prod}"),
    ] {
        write(
            dir.path(),
            &format!("clusters/{name}.yaml"),
            &format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}, labels: {labels}}}\nspec: {{kubeconfig: {name}.yaml}}\n"),
        );
        write(
            dir.path(),
            &format!("claims/{name}.yaml"),
            &format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nspec: {{clusterName: {name}}}\n"),
        );
    }
    dir
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(common::binary())
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
    let dir = fleet(
        "  pins: {stackgres-operator: 1.18.5}\n  overrides:\n  - selector: {matchLabels: {tier: edge}}\n    pins: {stackgres-operator: 1.17.0, atlas-operator: 0.7.0}\n  - selector: {matchLabels: {env: prod}}\n    pins: {atlas-operator: 0.7.24}\n  - selector: {matchLabels: {env: dev}}\n    pins: {atlas-operator: 0.8.0}\n",
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
    let defaults = fleet("  drift: {policy: correct}\n");
    assert!(versions(defaults.path())
        .iter()
        .all(|(_, sg, atlas)| sg == "1.18.4" && atlas == "0.7.23"));
}

#[test]
fn a_pin_outside_known_versions_is_a_warning_and_validate_still_passes() {
    let dir = fleet(
        "  pins: {stackgres-operator: 1.18.9}\n  overrides:\n  - selector: {matchLabels: {env: dev}}\n    pins: {atlas-operator: 0.9.0}\n  knownVersions:\n    stackgres-operator: [1.18.4, 1.19.0]\n    atlas-operator: [0.7.23]\n",
    );
    let out = run(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("fleet.yaml: document 1: spec.pins.stackgres-operator: warning: 1.18.9 is not among the known versions"),
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
    let dir = fleet("  overrides:\n  - selector: {matchLabels: {env: dev}}\n    pins: {atlas-operator: latest}\n");
    let out = run(&["validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.overrides[0].pins.atlas-operator"),
        "{stderr}"
    );
}
