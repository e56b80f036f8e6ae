//! Field-ownership scenarios on a real provider-helm `Release`, with the schema read from the
//! upstream CRD: the agent applying, people editing, and a controller writing status.

use serde_json::{json, Value};

use super::*;

mod status;

pub(super) const API_VERSION: &str = "helm.m.crossplane.io/v1beta1";

/// The Release schema from the upstream CRD, or `None` (and a note) when the checkout lacks it.
pub(super) fn release_schema() -> Option<Schema> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/crds/helm.m.crossplane.io_releases.yaml"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipping: upstream CRD {path} is not present");
        return None;
    };
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1beta1")
        .unwrap()
        .clone();
    Some(Schema::from_crd_version(&version))
}

pub(super) fn ctx<'a>(manager: &'a str, now: &'a str) -> WriteContext<'a> {
    WriteContext {
        manager,
        api_version: API_VERSION,
        subresource: None,
        now,
    }
}

pub(super) fn status_ctx<'a>(manager: &'a str, now: &'a str) -> WriteContext<'a> {
    WriteContext {
        subresource: Some("status"),
        ..ctx(manager, now)
    }
}

pub(super) fn agent_config(version: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "Release",
        "metadata": {
            "name": "stackgres",
            "namespace": "psql-fleet",
            "labels": {"app.kubernetes.io/managed-by": "psql-fleet"}
        },
        "spec": {
            "managementPolicies": ["*"],
            "forProvider": {
                "chart": {"name": "stackgres-operator", "repository": "https://stackgres.io/helm", "version": version},
                "namespace": "stackgres",
                "values": {"adminui": {"service": {"type": "ClusterIP"}}}
            }
        }
    })
}

/// What the server adds on create, none of which anyone owns.
pub(super) fn stored(mut object: Value) -> Value {
    let meta = object["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!("6f1c"));
    meta.insert("resourceVersion".into(), json!("1"));
    meta.insert("creationTimestamp".into(), json!("2025-01-01T00:00:00Z"));
    object
}

pub(super) fn entries(object: &Value) -> Vec<(String, String, Option<String>)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                        e["subresource"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn owns(
    object: &Value,
    manager: &str,
    op: Operation,
    sub: Option<&str>,
    path: &[&str],
) -> bool {
    let path: Vec<PathElement> = path
        .iter()
        .map(|p| PathElement::Field((*p).to_owned()))
        .collect();
    managed_fields_of(object, manager, op, sub).is_some_and(|set| set.has(&path))
}

pub(super) fn created(schema: &Schema) -> Value {
    let t0 = "2025-01-01T00:00:00Z";
    stored(
        apply(
            schema,
            None,
            &agent_config("1.14.0"),
            false,
            &ctx("psql-fleet", t0),
        )
        .unwrap(),
    )
}

/// `kubectl edit` of the chart version: an Update write of the whole object.
fn edited_version(schema: &Schema, live: &Value, version: &str) -> Value {
    edited(schema, live, "2025-01-02T00:00:00Z", |new| {
        new["spec"]["forProvider"]["chart"]["version"] = json!(version);
    })
}

/// `kubectl edit` of whatever `edit` changes, at `time`: an Update write of the whole object.
fn edited(schema: &Schema, live: &Value, time: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut new = live.clone();
    edit(&mut new);
    track_update(schema, Some(live), &new, &ctx("kubectl-edit", time))
}

/// The agent's next apply, not forced, of its configuration without
/// `spec.forProvider.<field>`.
fn agent_drops(schema: &Schema, live: &Value, field: &str) -> Value {
    let mut config = agent_config("1.14.0");
    config["spec"]["forProvider"]
        .as_object_mut()
        .unwrap()
        .remove(field);
    apply(schema, Some(live), &config, false, &ctx("psql-fleet", "t2")).unwrap()
}

#[test]
fn the_agents_first_apply_records_exactly_what_it_applied() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    assert_eq!(
        entries(&live),
        [("psql-fleet".into(), "Apply".into(), None)]
    );
    let entry = &live["metadata"]["managedFields"][0];
    assert_eq!(entry["apiVersion"], API_VERSION);
    assert_eq!(entry["time"], "2025-01-01T00:00:00Z");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(
        entry["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}},
            "f:spec": {
                "f:managementPolicies": {},
                "f:forProvider": {
                    "f:chart": {"f:name": {}, "f:repository": {}, "f:version": {}},
                    "f:namespace": {},
                    "f:values": {"f:adminui": {".": {}, "f:service": {".": {}, "f:type": {}}}}
                }
            }
        })
    );
}

#[test]
fn applying_the_same_configuration_twice_changes_nothing() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let again = apply(
        &schema,
        Some(&live),
        &agent_config("1.14.0"),
        false,
        &ctx("psql-fleet", "2025-01-05T00:00:00Z"),
    )
    .unwrap();
    assert!(is_noop(&live, &again), "{again:#}");
}

#[test]
fn a_kubectl_edit_makes_the_agents_next_apply_conflict_until_forced() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = edited_version(&schema, &created(&schema), "1.99.0");
    assert!(owns(
        &live,
        "kubectl-edit",
        Operation::Update,
        None,
        &["spec", "forProvider", "chart", "version"]
    ));
    assert!(!owns(
        &live,
        "psql-fleet",
        Operation::Apply,
        None,
        &["spec", "forProvider", "chart", "version"]
    ));

    let t = "2025-01-03T00:00:00Z";
    let conflicts = apply(
        &schema,
        Some(&live),
        &agent_config("1.14.0"),
        false,
        &ctx("psql-fleet", t),
    )
    .unwrap_err();
    assert_eq!(
        conflicts.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using \
         helm.m.crossplane.io/v1beta1: .spec.forProvider.chart.version"
    );
    assert_eq!(
        conflicts.causes(),
        json!([{"reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-edit\" using helm.m.crossplane.io/v1beta1",
                "field": ".spec.forProvider.chart.version"}])
    );

    let forced = apply(
        &schema,
        Some(&live),
        &agent_config("1.14.0"),
        true,
        &ctx("psql-fleet", t),
    )
    .unwrap();
    assert_eq!(forced["spec"]["forProvider"]["chart"]["version"], "1.14.0");
    // kubectl-edit owned only that field, so its entry disappears.
    assert_eq!(
        entries(&forced),
        [("psql-fleet".into(), "Apply".into(), None)]
    );
    assert_eq!(forced["metadata"]["managedFields"][0]["time"], t);
}

#[test]
fn applying_the_edited_value_shares_the_field_instead_of_conflicting() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = edited_version(&schema, &created(&schema), "1.99.0");
    let t = "2025-01-03T00:00:00Z";
    let agreed = apply(
        &schema,
        Some(&live),
        &agent_config("1.99.0"),
        false,
        &ctx("psql-fleet", t),
    )
    .unwrap();
    let version = ["spec", "forProvider", "chart", "version"];
    assert!(owns(
        &agreed,
        "kubectl-edit",
        Operation::Update,
        None,
        &version
    ));
    assert!(owns(
        &agreed,
        "psql-fleet",
        Operation::Apply,
        None,
        &version
    ));
    // The object did not change, so the agent's entry keeps its time.
    assert_eq!(
        agreed["metadata"]["managedFields"][0]["time"],
        "2025-01-01T00:00:00Z"
    );
}

#[test]
fn kubectl_client_side_apply_is_an_updater_the_agent_conflicts_with() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let mut new = live.clone();
    new["spec"]["managementPolicies"] = json!(["Observe"]);
    let live = track_update(
        &schema,
        Some(&live),
        &new,
        &ctx("kubectl-client-side-apply", "2025-01-02T00:00:00Z"),
    );
    let err = apply(
        &schema,
        Some(&live),
        &agent_config("1.14.0"),
        false,
        &ctx("psql-fleet", "t"),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using \
         helm.m.crossplane.io/v1beta1: .spec.managementPolicies"
    );
}

#[test]
fn another_applier_with_a_different_value_conflicts_without_an_api_version() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let mut other = agent_config("2.0.0");
    other["spec"]["forProvider"]["namespace"] = json!("elsewhere");
    let err = apply(
        &schema,
        Some(&live),
        &other,
        false,
        &ctx("other-agent", "t"),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 2 conflicts: conflicts with \"psql-fleet\":\n\
         - .spec.forProvider.chart.version\n- .spec.forProvider.namespace"
    );
}

#[test]
fn a_field_the_agent_stops_applying_is_removed() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let mut config = agent_config("1.14.0");
    config["spec"]["forProvider"]["values"] = json!({"adminui": {"service": {}}});
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let next = apply(
        &schema,
        Some(&live),
        &config,
        false,
        &ctx("psql-fleet", "t"),
    )
    .unwrap();
    assert_eq!(
        next["spec"]["forProvider"]["values"],
        json!({"adminui": {"service": {}}})
    );
    assert!(next["metadata"].get("labels").is_none(), "{next:#}");
    assert_eq!(next["metadata"]["name"], "stackgres");
    assert_eq!(next["metadata"]["uid"], "6f1c");
}

#[test]
fn a_dropped_field_that_an_editor_took_over_stays() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = edited(&schema, &created(&schema), "t1", |new| {
        new["spec"]["forProvider"]["namespace"] = json!("stackgres-edited");
    });
    let next = agent_drops(&schema, &live, "namespace");
    assert_eq!(next["spec"]["forProvider"]["namespace"], "stackgres-edited");
}

#[test]
fn dropping_a_values_key_removes_it_whole_even_where_an_editor_added_beneath_it() {
    // Helm values are preserve-unknown: their keys are map entries, not named fields, so
    // Kubernetes prunes an entry the applier owned even if another manager owns a field inside.
    let Some(schema) = release_schema() else {
        return;
    };
    let live = edited(&schema, &created(&schema), "t1", |new| {
        new["spec"]["forProvider"]["values"]["adminui"]["replicas"] = json!(2);
        new["spec"]["forProvider"]["values"]["extra"] = json!(true);
    });
    let next = agent_drops(&schema, &live, "values");
    assert_eq!(
        next["spec"]["forProvider"]["values"],
        json!({"extra": true})
    );
}

#[test]
fn labels_applied_with_the_same_value_are_shared_until_both_let_go() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let label = ["metadata", "labels", "app.kubernetes.io/managed-by"];
    let other = json!({"apiVersion": API_VERSION, "kind": "Release",
        "metadata": {"name": "stackgres", "namespace": "psql-fleet",
                     "labels": {"app.kubernetes.io/managed-by": "psql-fleet"}}});
    let shared = apply(&schema, Some(&live), &other, false, &ctx("auditor", "t1")).unwrap();
    assert!(owns(&shared, "auditor", Operation::Apply, None, &label));
    assert!(owns(&shared, "psql-fleet", Operation::Apply, None, &label));

    let mut config = agent_config("1.14.0");
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let agent_left = apply(
        &schema,
        Some(&shared),
        &config,
        false,
        &ctx("psql-fleet", "t2"),
    )
    .unwrap();
    assert_eq!(
        agent_left["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "psql-fleet"
    );
    assert!(owns(&agent_left, "auditor", Operation::Apply, None, &label));
    assert!(!owns(
        &agent_left,
        "psql-fleet",
        Operation::Apply,
        None,
        &label
    ));

    let mut bare = other.clone();
    bare["metadata"].as_object_mut().unwrap().remove("labels");
    let both_left = apply(
        &schema,
        Some(&agent_left),
        &bare,
        false,
        &ctx("auditor", "t3"),
    )
    .unwrap();
    assert!(
        both_left["metadata"].get("labels").is_none(),
        "{both_left:#}"
    );
    assert_eq!(
        entries(&both_left),
        [("psql-fleet".into(), "Apply".into(), None)]
    );
}

#[test]
fn updates_by_one_manager_merge_into_one_entry() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = edited_version(&schema, &created(&schema), "1.99.0");
    let mut new = live.clone();
    new["spec"]["forProvider"]["wait"] = json!(true);
    let live = track_update(
        &schema,
        Some(&live),
        &new,
        &ctx("kubectl-edit", "2025-01-04T00:00:00Z"),
    );
    let edits: Vec<_> = entries(&live)
        .into_iter()
        .filter(|e| e.0 == "kubectl-edit")
        .collect();
    assert_eq!(edits.len(), 1);
    let wait = ["spec", "forProvider", "wait"];
    let version = ["spec", "forProvider", "chart", "version"];
    assert!(owns(&live, "kubectl-edit", Operation::Update, None, &wait));
    assert!(owns(
        &live,
        "kubectl-edit",
        Operation::Update,
        None,
        &version
    ));
    // A write that changes nothing keeps the entry's time.
    let same = track_update(
        &schema,
        Some(&live),
        &live,
        &ctx("kubectl-edit", "2025-02-01T00:00:00Z"),
    );
    assert!(is_noop(&live, &same));
}

#[test]
fn a_created_object_is_owned_by_its_creator_without_server_set_fields() {
    let Some(schema) = release_schema() else {
        return;
    };
    let object = stored(agent_config("1.14.0"));
    let created = track_update(&schema, None, &object, &ctx("kubectl-create", "t0"));
    let fields = created["metadata"]["managedFields"][0]["fieldsV1"].clone();
    assert_eq!(
        fields["f:metadata"],
        json!({"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}}})
    );
    // Created specs are owned as a whole too, as for any custom resource.
    assert_eq!(fields["f:spec"]["."], json!({}));
    assert!(fields.get("f:apiVersion").is_none() && fields.get("f:kind").is_none());
}

#[test]
fn an_untracked_object_is_owned_by_before_first_apply_at_its_first_apply() {
    let Some(schema) = release_schema() else {
        return;
    };
    let untracked = stored(agent_config("1.99.0"));
    let err = apply(
        &schema,
        Some(&untracked),
        &agent_config("1.14.0"),
        false,
        &ctx("psql-fleet", "t1"),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using \
         helm.m.crossplane.io/v1beta1: .spec.forProvider.chart.version"
    );
    let adopted = apply(
        &schema,
        Some(&untracked),
        &agent_config("1.99.0"),
        false,
        &ctx("psql-fleet", "t1"),
    )
    .unwrap();
    assert_eq!(
        entries(&adopted),
        [
            ("psql-fleet".into(), "Apply".into(), None),
            (BEFORE_FIRST_APPLY.into(), "Update".into(), None),
        ]
    );
}

#[test]
fn an_update_may_reset_or_replace_managed_fields_but_a_status_write_may_not() {
    let Some(schema) = release_schema() else {
        return;
    };
    let live = created(&schema);
    let cases = [
        (json!([]), None, vec![]),
        (json!([{}]), None, vec![]),
        (
            json!([{"manager": "someone", "operation": "Update", "apiVersion": API_VERSION,
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:rollbackLimit": {}}}}]),
            None,
            vec![("someone".to_owned(), "Update".to_owned(), None)],
        ),
        (
            json!([]),
            Some("status"),
            vec![("psql-fleet".to_owned(), "Apply".to_owned(), None)],
        ),
    ];
    for (requested, subresource, want) in cases {
        let mut new = live.clone();
        new["metadata"]["managedFields"] = requested.clone();
        let write = WriteContext {
            subresource,
            ..ctx("kubectl-edit", "t1")
        };
        let written = track_update(&schema, Some(&live), &new, &write);
        assert_eq!(
            entries(&written),
            want,
            "managedFields {requested} via {subresource:?}"
        );
    }
}
