//! Status-subresource scenarios on a Release: a controller's status writes and the agent's spec
//! applies stay out of each other's way.

use serde_json::{json, Value};

use super::*;

#[test]
fn a_controllers_status_update_does_not_conflict_with_the_agents_spec_apply() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let mut new = live.clone();
    new["status"] = json!({"conditions": [
        {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2025-01-01T00:01:00Z"}
    ], "atProvider": {"state": "deployed", "revision": 1}});
    // Whatever else the controller sends, /status only writes status.
    new["spec"]["forProvider"]["chart"]["version"] = json!("6.6.6");
    let live = track_update(
        &schema,
        Some(&live),
        &new,
        &status_ctx("provider-helm", "t1"),
    );
    assert_eq!(live["spec"]["forProvider"]["chart"]["version"], "1.14.0");
    assert_eq!(live["status"]["atProvider"]["state"], "deployed");
    let fields =
        managed_fields_of(&live, "provider-helm", Operation::Update, Some("status")).unwrap();
    assert_eq!(
        fields.to_fields_v1()["f:status"]["f:conditions"],
        json!({".": {}, "k:{\"type\":\"Ready\"}": {".": {}, "f:lastTransitionTime": {}, "f:reason": {},
                                         "f:status": {}, "f:type": {}}})
    );
    assert!(!fields
        .to_fields_v1()
        .as_object()
        .unwrap()
        .contains_key("f:spec"));

    // The agent's next apply, even one that carries a status, neither conflicts nor changes it.
    let mut config = agent_config("1.15.0");
    config["status"] = json!({"conditions": [{"type": "Ready", "status": "False"}]});
    let next = apply(
        &schema,
        Some(&live),
        &config,
        false,
        &ctx("psql-fleet", "t2"),
    )
    .unwrap();
    assert_eq!(next["spec"]["forProvider"]["chart"]["version"], "1.15.0");
    assert_eq!(next["status"], live["status"]);
    assert!(!owns(
        &next,
        "psql-fleet",
        Operation::Apply,
        None,
        &["status", "conditions"]
    ));
    assert_eq!(
        entries(&next),
        [
            ("psql-fleet".into(), "Apply".into(), None),
            (
                "provider-helm".into(),
                "Update".into(),
                Some("status".into())
            ),
        ]
    );
}

#[test]
fn a_status_apply_through_the_subresource_owns_conditions_by_type() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let status = |ready: &str| {
        json!({"apiVersion": API_VERSION, "kind": "Release",
               "metadata": {"name": "stackgres", "namespace": "psql-fleet"},
               "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    };
    let live = apply(
        &schema,
        Some(&live),
        &status("True"),
        false,
        &status_ctx("ctrl-a", "t1"),
    )
    .unwrap();
    // A second controller adding its own condition merges by `type` and shares nothing.
    let other = json!({"apiVersion": API_VERSION, "kind": "Release",
        "metadata": {"name": "stackgres", "namespace": "psql-fleet"},
        "status": {"conditions": [{"type": "Synced", "status": "True"}]}});
    let live = apply(
        &schema,
        Some(&live),
        &other,
        false,
        &status_ctx("ctrl-b", "t2"),
    )
    .unwrap();
    let types: Vec<&Value> = live["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(types, [&json!("Ready"), &json!("Synced")]);
    let err = apply(
        &schema,
        Some(&live),
        &status("False"),
        false,
        &status_ctx("ctrl-b", "t3"),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"ctrl-a\" with subresource \"status\": \
         .status.conditions[type=\"Ready\"].status"
    );
}
