//! The CRDs generated from the project's Rust types (served by the simulator) against the
//! upstream CRDs in ../shared/crds, field by field; every difference is reported.

use serde_json::Value;

const UPSTREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/crds");

fn compare(path: &str, up: &Value, ours: &Value, diffs: &mut Vec<String>) {
    for key in [
        "type",
        "format",
        "enum",
        "required",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-map-type",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-validations",
        "default",
        "nullable",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
    ] {
        let (a, b) = (up.get(key), ours.get(key));
        let norm = |v: Option<&Value>| match (key, v) {
            ("required" | "enum", Some(Value::Array(a))) => {
                let mut a: Vec<String> = a.iter().map(Value::to_string).collect();
                a.sort();
                Some(a.join(","))
            }
            (_, v) => v.map(Value::to_string),
        };
        if norm(a) != norm(b) {
            diffs.push(format!(
                "{path}: {key}: upstream {:?}, generated {:?}",
                norm(a),
                norm(b)
            ));
        }
    }
    let empty = serde_json::Map::new();
    let (up_props, our_props) = (
        up["properties"].as_object().unwrap_or(&empty),
        ours["properties"].as_object().unwrap_or(&empty),
    );
    for (k, v) in up_props {
        match our_props.get(k) {
            Some(o) => compare(&format!("{path}.{k}"), v, o, diffs),
            None => diffs.push(format!("{path}.{k}: missing in generated")),
        }
    }
    for k in our_props.keys().filter(|k| !up_props.contains_key(*k)) {
        diffs.push(format!("{path}.{k}: not upstream"));
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", "{}")] {
        match (up.get(key), ours.get(key)) {
            (Some(a), Some(b)) if a.is_object() && b.is_object() => {
                compare(&format!("{path}{suffix}"), a, b, diffs)
            }
            (a, b) if a != b => diffs.push(format!(
                "{path}: {key}: upstream {:?}, generated {:?}",
                a.map(Value::to_string),
                b.map(Value::to_string)
            )),
            _ => {}
        }
    }
}

fn compare_crd(up: &Value, ours: &Value, diffs: &mut Vec<String>) {
    let name = up["metadata"]["name"].as_str().unwrap_or("?").to_string();
    for p in [
        "/spec/group",
        "/spec/scope",
        "/spec/names/kind",
        "/spec/names/plural",
        "/spec/names/singular",
        "/spec/names/listKind",
        "/spec/names/categories",
        "/spec/names/shortNames",
    ] {
        if up.pointer(p) != ours.pointer(p) {
            diffs.push(format!(
                "{name}{p}: upstream {:?}, generated {:?}",
                up.pointer(p),
                ours.pointer(p)
            ));
        }
    }
    let (uv, ov) = (&up["spec"]["versions"][0], &ours["spec"]["versions"][0]);
    for p in ["/name", "/subresources"] {
        if uv.pointer(p) != ov.pointer(p) {
            diffs.push(format!(
                "{name} version{p}: upstream {:?}, generated {:?}",
                uv.pointer(p),
                ov.pointer(p)
            ));
        }
    }
    let cols = |v: &Value| -> Vec<String> {
        v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}|{}|{}|{}",
                    c["name"],
                    c["type"],
                    c["jsonPath"],
                    c.get("priority").cloned().unwrap_or(Value::from(0))
                )
            })
            .collect()
    };
    if cols(uv) != cols(ov) {
        diffs.push(format!(
            "{name} printer columns: upstream {:?}, generated {:?}",
            cols(uv),
            cols(ov)
        ));
    }
    compare(
        &name,
        &uv["schema"]["openAPIV3Schema"],
        &ov["schema"]["openAPIV3Schema"],
        diffs,
    );
}

#[test]
fn generated_crds_match_upstream_field_by_field() {
    let dir = std::path::Path::new(UPSTREAM);
    if !dir.is_dir() {
        eprintln!("SKIP: upstream CRDs not found at {UPSTREAM}");
        return;
    }
    let mut diffs = Vec::new();
    for ours in kube_sim::crds::generated_crds() {
        let name = ours["metadata"]["name"].as_str().unwrap().to_string();
        let group = ours["spec"]["group"].as_str().unwrap();
        let plural = ours["spec"]["names"]["plural"].as_str().unwrap();
        let file = dir.join(format!("{group}_{plural}.yaml"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            diffs.push(format!("{name}: no upstream file {}", file.display()));
            continue;
        };
        let up: Value = serde_yaml::from_str(&text).unwrap();
        compare_crd(&up, &ours, &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
