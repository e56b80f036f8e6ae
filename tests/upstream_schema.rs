//! Every rendered object must be accepted by the real upstream CRD schema in
//! `../shared/crds`, read at test time. Unknown fields are rejected as the API server's
//! structural pruning would drop them.

use test_support as common;

use std::fs;
use std::path::Path;

use psql_fleet::cli::render::render_fleet;
use serde_json::{json, Value};

/// The openAPIV3Schema of `version` in an upstream CRD file.
fn crd_schema(dir: &Path, file: &str, version: &str) -> Value {
    let text = fs::read_to_string(dir.join(file)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    let versions = crd["spec"]["versions"].as_array().unwrap();
    let v = versions.iter().find(|v| v["name"] == version).unwrap();
    strict(v["schema"]["openAPIV3Schema"].clone())
}

/// Objects with declared properties and no preserve-unknown-fields admit nothing else,
/// which is what structural pruning means for an apply.
fn strict(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if map.contains_key("properties") && !preserve && !map.contains_key("additionalProperties")
        {
            map.insert("additionalProperties".into(), json!(false));
        }
        for value in map.values_mut() {
            *value = strict(value.take());
        }
    } else if let Value::Array(items) = &mut schema {
        for item in items {
            *item = strict(item.take());
        }
    }
    schema
}

fn validator(dir: &Path, kind: &str) -> jsonschema::Validator {
    let file = match kind {
        "Release" => "helm.m.crossplane.io_releases.yaml",
        "Usage" => "protection.crossplane.io_usages.yaml",
        other => panic!("no upstream CRD for {other}"),
    };
    jsonschema::validator_for(&crd_schema(dir, file, "v1beta1")).unwrap()
}

fn errors(dir: &Path, object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap();
    validator(dir, kind)
        .iter_errors(object)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_rendered_object_validates_against_the_upstream_crd() {
    let Some(dir) = common::upstream_crds() else {
        return;
    };
    let mut checked = 0;
    for fleet_dir in ["fleet", "examples"] {
        let fleet = common::load_fleet(&common::root().join(fleet_dir));
        for (cluster, objects) in render_fleet(&fleet, None, true) {
            for object in objects {
                let problems = errors(&dir, &object);
                assert!(
                    problems.is_empty(),
                    "{fleet_dir}/{cluster}: {}: {problems:?}",
                    object["metadata"]["name"]
                );
                if object["kind"] == "Usage" {
                    // The CRD's CEL rule, which JSON Schema cannot express.
                    let spec = &object["spec"];
                    assert!(spec.get("by").is_some() || spec.get("reason").is_some());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} objects checked");
}

#[test]
fn the_schema_check_rejects_what_the_api_server_would() {
    let Some(dir) = common::upstream_crds() else {
        return;
    };
    let fleet = common::load_fleet(&common::root().join("fleet"));
    let release = render_fleet(&fleet, Some("dev-1"), false)["dev-1"][0].clone();
    assert!(errors(&dir, &release).is_empty());

    let mut typo = release.clone();
    typo["spec"]["forProvider"]["chartz"] = json!({});
    assert!(!errors(&dir, &typo).is_empty(), "unknown field accepted");

    let mut wrong_type = release.clone();
    wrong_type["spec"]["rollbackLimit"] = json!("3");
    assert!(
        !errors(&dir, &wrong_type).is_empty(),
        "string rollbackLimit accepted"
    );

    let mut bad_policy = release;
    bad_policy["spec"]["managementPolicies"] = json!(["Everything"]);
    assert!(
        !errors(&dir, &bad_policy).is_empty(),
        "unknown management policy accepted"
    );
}
