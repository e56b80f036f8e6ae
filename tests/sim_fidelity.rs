//! The simulator answers as kube-apiserver does where a client can tell (issue 13): each
//! test sends the request a client sends and checks the status code and the body the real
//! server answers with, word for word where clients read the words. The table in
//! `docs/simulator-fidelity.md` names the test of each behaviour.

use test_support as common;

use std::time::Duration;

use http_body_util::BodyExt;
use kube_sim::{SimConfig, SimHandle};
use serde_json::{json, Value};

const RELEASES: &str = "/apis/helm.m.crossplane.io/v1beta1/namespaces/default/releases";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const APPLY: &str = "application/apply-patch+yaml";
const JSON: &str = "application/json";

/// One cluster whose Releases are ready at once, and a client of it.
async fn start() -> (tempfile::TempDir, SimHandle, kube::Client) {
    let (dir, handle) = common::sim::start(SimConfig {
        clusters: 1,
        ready_after: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let client = common::sim::client(&handle, &handle.cluster_names[0]).await;
    (dir, handle, client)
}

/// A request as sent, and the answer's code and body (JSON when it parses, else a string).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::ACCEPT, JSON)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (code, body)
}

fn release(name: &str, spec_extra: Value) -> Value {
    let mut spec =
        json!({"forProvider": {"chart": {"name": "atlas-operator", "version": "0.7.23"}}});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

fn deployment(name: &str) -> Value {
    kube_sim::crds::operator_deployment("default", name, "r", "c")
}

async fn apply(client: &kube::Client, name: &str, query: &str, body: &Value) -> (u16, Value) {
    send(
        client,
        "PATCH",
        &format!("{RELEASES}/{name}?{query}"),
        APPLY,
        &body.to_string(),
    )
    .await
}

// Point 4: server-side apply.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_without_a_field_manager_is_invalid_patch_options() {
    let (_dir, handle, c) = start().await;
    let (code, status) = apply(&c, "a", "", &release("a", json!({}))).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(
        status["details"],
        json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
            {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}
        ]})
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_field_not_in_the_schema_is_a_500_whatever_field_validation_says() {
    let (_dir, handle, c) = start().await;
    for validation in [
        "",
        "&fieldValidation=Ignore",
        "&fieldValidation=Warn",
        "&fieldValidation=Strict",
    ] {
        let body = release("a", json!({"rollbackLimitt": 3}));
        let (code, status) = apply(&c, "a", &format!("fieldManager=t{validation}"), &body).await;
        assert_eq!(code, 500, "{validation}: {status}");
        assert_eq!(
            status["message"],
            "failed to create typed patch object (default/a; helm.m.crossplane.io/v1beta1, Kind=Release): .spec.rollbackLimitt: field not declared in schema",
            "{validation}"
        );
    }
    // Nothing was created.
    let (code, _) = send(&c, "GET", &format!("{RELEASES}/a"), JSON, "").await;
    assert_eq!(code, 404);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_or_update_with_an_unknown_field_under_strict_validation_is_a_400() {
    let (_dir, handle, c) = start().await;
    let body = release("a", json!({"rollbackLimitt": 3})).to_string();
    let (code, status) = send(
        &c,
        "POST",
        &format!("{RELEASES}?fieldValidation=Strict"),
        JSON,
        &body,
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: unknown field \"spec.rollbackLimitt\""),
        "{status}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_naming_another_object_than_the_url_is_a_409_naming_both() {
    let (_dir, handle, c) = start().await;
    let (code, status) = apply(
        &c,
        "on-the-url",
        "fieldManager=t",
        &release("in-the-body", json!({})),
    )
    .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("(in-the-body)") && message.contains("(on-the-url)"),
        "{message}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_conflict_lists_its_causes_by_reason_and_names_no_object() {
    let (_dir, handle, c) = start().await;
    let (code, _) = apply(&c, "a", "fieldManager=first", &release("a", json!({}))).await;
    assert_eq!(code, 201);
    let mut other = release("a", json!({}));
    other["spec"]["forProvider"]["chart"]["version"] = json!("0.7.22");
    let (code, status) = apply(&c, "a", "fieldManager=second", &other).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        status["details"],
        json!({"causes": [{
            "reason": "FieldManagerConflict",
            "message": "conflict with \"first\"",
            "field": ".spec.forProvider.chart.version"
        }]})
    );
    handle.shutdown().await;
}

// Point 5: delete.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_without_finalizers_answers_a_success_status() {
    let (_dir, handle, c) = start().await;
    let (code, created) = send(&c, "POST", DEPLOYMENTS, JSON, &deployment("d").to_string()).await;
    assert_eq!(code, 201, "{created}");
    let (code, status) = send(&c, "DELETE", &format!("{DEPLOYMENTS}/d"), JSON, "").await;
    assert_eq!(code, 200);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Success");
    assert_eq!(
        status["details"],
        json!({"name": "d", "group": "apps", "kind": "deployments", "uid": created["metadata"]["uid"]})
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_object_with_finalizers_marks_it_and_increments_its_generation() {
    let (_dir, handle, c) = start().await;
    let mut body = release("a", json!({}));
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, created) = send(&c, "POST", RELEASES, JSON, &body.to_string()).await;
    assert_eq!(code, 201, "{created}");
    let generation = created["metadata"]["generation"].as_i64().unwrap();
    let (code, deleted) = send(&c, "DELETE", &format!("{RELEASES}/a"), JSON, "").await;
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["kind"], "Release");
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{deleted}"
    );
    assert_eq!(deleted["metadata"]["generation"], generation + 1);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_delete_marks_the_owner_and_the_collector_releases_its_dependents() {
    let (_dir, handle, c) = start().await;
    let (_, owner) = send(
        &c,
        "POST",
        DEPLOYMENTS,
        JSON,
        &deployment("owner").to_string(),
    )
    .await;
    let mut dependent = deployment("dependent");
    dependent["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "owner", "uid": owner["metadata"]["uid"]
    }]);
    let (code, _) = send(&c, "POST", DEPLOYMENTS, JSON, &dependent.to_string()).await;
    assert_eq!(code, 201);
    let orphan = format!("{DEPLOYMENTS}/owner?propagationPolicy=Orphan");
    let (code, marked) = send(&c, "DELETE", &orphan, JSON, "").await;
    assert_eq!(code, 200, "{marked}");
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["orphan"]),
        "{marked}"
    );
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let owner_path = format!("{DEPLOYMENTS}/owner");
    common::wait::until("the owner gone", || async {
        send(&c, "GET", &owner_path, JSON, "").await.0 == 404
    })
    .await;
    let (code, kept) = send(&c, "GET", &format!("{DEPLOYMENTS}/dependent"), JSON, "").await;
    assert_eq!(code, 200, "the dependent is orphaned, not deleted");
    assert!(kept["metadata"].get("ownerReferences").is_none(), "{kept}");
    handle.shutdown().await;
}

// Point 2: CRD defaults and the OpenAPI the CRDs publish.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_applied_and_dry_run_releases_get_the_schema_defaults() {
    let (_dir, handle, c) = start().await;
    let defaulted = |r: &Value| {
        assert_eq!(r["spec"]["forProvider"]["maxHistory"], 20, "{r}");
        assert_eq!(r["spec"]["managementPolicies"], json!(["*"]), "{r}");
        assert_eq!(
            r["spec"]["providerConfigRef"],
            json!({"kind": "ClusterProviderConfig", "name": "default"}),
            "{r}"
        );
    };
    let body = release("created", json!({})).to_string();
    let (code, created) = send(&c, "POST", RELEASES, JSON, &body).await;
    assert_eq!(code, 201, "{created}");
    defaulted(&created);
    let body = release("dry", json!({})).to_string();
    let (code, dry) = send(&c, "POST", &format!("{RELEASES}?dryRun=All"), JSON, &body).await;
    assert_eq!(code, 201, "{dry}");
    defaulted(&dry);
    let (code, applied) = apply(
        &c,
        "applied",
        "fieldManager=t",
        &release("applied", json!({})),
    )
    .await;
    assert_eq!(code, 201, "{applied}");
    defaulted(&applied);
    // A value given is kept, and the defaults are nobody's fields.
    let given = release("given", json!({"managementPolicies": ["Observe"]}));
    let (_, given) = apply(&c, "given", "fieldManager=t", &given).await;
    assert_eq!(given["spec"]["managementPolicies"], json!(["Observe"]));
    let owned = given["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"].to_string();
    assert!(!owned.contains("providerConfigRef"), "{owned}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_schemas_mark_nothing_nullable_that_the_crds_do_not() {
    let (_dir, handle, c) = start().await;
    for path in [
        "/openapi/v3/apis/helm.m.crossplane.io/v1beta1",
        "/openapi/v3/apis/protection.crossplane.io/v1beta1",
    ] {
        let (code, doc) = send(&c, "GET", path, JSON, "").await;
        assert_eq!(code, 200, "{path}");
        assert!(!doc.to_string().contains("\"nullable\""), "{path}: {doc}");
    }
    // A null where the schema has no nullable is refused.
    let body = release("n", json!({"rollbackLimit": null})).to_string();
    let (code, status) = send(&c, "POST", RELEASES, JSON, &body).await;
    assert_eq!(code, 422, "{status}");
    handle.shutdown().await;
}

// Point 3: CEL rules, and ClusterUsage served.

const USAGES: &str = "/apis/protection.crossplane.io/v1beta1/namespaces/default/usages";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_with_neither_by_nor_reason_fails_its_cel_rule_with_a_422() {
    let (_dir, handle, c) = start().await;
    let usage = |spec: Value| {
        json!({
            "apiVersion": "protection.crossplane.io/v1beta1",
            "kind": "Usage",
            "metadata": {"name": "u", "namespace": "default"},
            "spec": spec,
        })
        .to_string()
    };
    let of = json!({"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release", "resourceRef": {"name": "a"}});
    let (code, status) = send(&c, "POST", USAGES, JSON, &usage(json!({"of": of}))).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Usage.protection.crossplane.io \"u\" is invalid: spec: Invalid value: \"object\": either \"spec.by\" or \"spec.reason\" must be specified."
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "message": "Invalid value: \"object\": either \"spec.by\" or \"spec.reason\" must be specified.", "field": "spec"}])
    );
    // The same through apply, and a cross-namespace "of" without "by".
    let (code, _) = send(
        &c,
        "PATCH",
        &format!("{USAGES}/u?fieldManager=t"),
        APPLY,
        &usage(json!({"of": of})),
    )
    .await;
    assert_eq!(code, 422);
    let mut elsewhere = of.clone();
    elsewhere["resourceRef"]["namespace"] = json!("other");
    let (code, status) = send(
        &c,
        "POST",
        USAGES,
        JSON,
        &usage(json!({"of": elsewhere, "reason": "r"})),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cross-namespace"),
        "{status}"
    );
    let (code, created) = send(
        &c,
        "POST",
        USAGES,
        JSON,
        &usage(json!({"of": of, "reason": "r"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_usages_are_served_cluster_scoped_in_the_crossplane_category() {
    let (_dir, handle, c) = start().await;
    let (code, list) = send(
        &c,
        "GET",
        "/apis/protection.crossplane.io/v1beta1",
        JSON,
        "",
    )
    .await;
    assert_eq!(code, 200);
    let resources = list["resources"].as_array().unwrap();
    let cu = resources
        .iter()
        .find(|r| r["name"] == "clusterusages")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(cu["kind"], "ClusterUsage");
    assert_eq!(cu["namespaced"], false);
    assert_eq!(cu["categories"], json!(["crossplane"]));
    handle.shutdown().await;
}

// Point 6: lists and watches.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_with_a_selector_and_a_limit_has_no_remaining_item_count() {
    let (_dir, handle, c) = start().await;
    for n in ["a", "b", "c"] {
        let mut d = deployment(n);
        d["metadata"]["labels"]["tier"] = json!("x");
        let (code, _) = send(&c, "POST", DEPLOYMENTS, JSON, &d.to_string()).await;
        assert_eq!(code, 201);
    }
    let (_, all) = send(&c, "GET", &format!("{DEPLOYMENTS}?limit=1"), JSON, "").await;
    assert_eq!(all["metadata"]["remainingItemCount"], 2, "{all}");
    let (_, selected) = send(
        &c,
        "GET",
        &format!("{DEPLOYMENTS}?limit=1&labelSelector=tier%3Dx"),
        JSON,
        "",
    )
    .await;
    assert_eq!(selected["items"].as_array().unwrap().len(), 1);
    assert!(selected["metadata"]["continue"].is_string(), "{selected}");
    assert!(
        selected["metadata"].get("remainingItemCount").is_none(),
        "{selected}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_version_older_than_the_window_gets_one_410_error_event() {
    let (dir, handle) = common::sim::start(SimConfig {
        clusters: 1,
        event_window: 2,
        ..SimConfig::default()
    })
    .await;
    let c = common::sim::client(&handle, &handle.cluster_names[0]).await;
    let (_, first) = send(&c, "POST", DEPLOYMENTS, JSON, &deployment("a").to_string()).await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    for n in ["b", "c", "d"] {
        send(&c, "POST", DEPLOYMENTS, JSON, &deployment(n).to_string()).await;
    }
    let (code, body) = send(
        &c,
        "GET",
        &format!("{DEPLOYMENTS}?watch=1&resourceVersion={rv}"),
        JSON,
        "",
    )
    .await;
    assert_eq!(code, 200);
    // One event, then the stream ends.
    assert_eq!(body["type"], "ERROR", "{body}");
    let status = &body["object"];
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("too old resource version: {rv} (")),
        "{message}"
    );
    handle.shutdown().await;
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_created_with_empty_labels_is_stored_without_them() {
    let (_dir, handle, c) = start().await;
    let mut body = release("a", json!({}));
    body["metadata"]["labels"] = json!({});
    body["metadata"]["annotations"] = json!({});
    let (code, created) = send(&c, "POST", RELEASES, JSON, &body.to_string()).await;
    assert_eq!(code, 201);
    assert!(created["metadata"].get("labels").is_none(), "{created}");
    assert!(
        created["metadata"].get("annotations").is_none(),
        "{created}"
    );
    let (_, read) = send(&c, "GET", &format!("{RELEASES}/a"), JSON, "").await;
    assert!(read["metadata"].get("labels").is_none(), "{read}");
    handle.shutdown().await;
}

// Point 7: errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resource_in_a_known_group_is_a_plain_text_404() {
    let (_dir, handle, c) = start().await;
    for path in [
        "/apis/helm.m.crossplane.io/v1beta1/namespaces/default/nosuchthings",
        "/apis/helm.m.crossplane.io/v1beta1/nosuchthings",
        "/apis/no.such.group/v1/things",
    ] {
        let (code, body) = send(&c, "GET", path, JSON, "").await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(body, json!("404 page not found\n"), "{path}");
    }
    // A known resource's missing object is a Status, as before.
    let (code, status) = send(&c, "GET", &format!("{RELEASES}/missing"), JSON, "").await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_field_errors_are_one_message_listing_them_in_brackets() {
    let (_dir, handle, c) = start().await;
    let body = release(
        "a",
        json!({"rollbackLimit": "three", "managementPolicies": ["Sometimes"]}),
    );
    let (code, status) = send(&c, "POST", RELEASES, JSON, &body.to_string()).await;
    assert_eq!(code, 422, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("Release.helm.m.crossplane.io \"a\" is invalid: [spec."),
        "{message}"
    );
    assert!(message.ends_with(']'), "{message}");
    assert_eq!(
        status["details"]["causes"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_patch_whose_test_fails_is_the_generic_422_with_empty_details() {
    let (_dir, handle, c) = start().await;
    send(
        &c,
        "POST",
        RELEASES,
        JSON,
        &release("a", json!({})).to_string(),
    )
    .await;
    let ops = json!([{"op": "test", "path": "/spec/rollbackLimit", "value": 99}]).to_string();
    let (code, status) = send(
        &c,
        "PATCH",
        &format!("{RELEASES}/a"),
        "application/json-patch+json",
        &ops,
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "the server rejected our request due to an error in our request"
    );
    assert_eq!(status["details"], json!({}));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_credentials_is_system_anonymous_and_forbidden() {
    let (_dir, handle, _) = start().await;
    let mut config = common::sim::config(&handle.kubeconfig_path(&handle.cluster_names[0])).await;
    config.auth_info = Default::default();
    let anonymous = kube::Client::try_from(config).unwrap();
    let (code, status) = send(&anonymous, "GET", RELEASES, JSON, "").await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "releases.helm.m.crossplane.io is forbidden: User \"system:anonymous\" cannot list resource \"releases\" in API group \"helm.m.crossplane.io\" in the namespace \"default\""
    );
    let (code, status) = send(&anonymous, "GET", "/apis", JSON, "").await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
    );
    // Health and version are public.
    let (code, _) = send(&anonymous, "GET", "/readyz", JSON, "").await;
    assert_eq!(code, 200);
    let (code, _) = send(&anonymous, "GET", "/version", JSON, "").await;
    assert_eq!(code, 200);
    handle.shutdown().await;
}

// Point 8: namespace termination.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_reports_the_deleters_conditions_and_refuses_new_content() {
    let (_dir, handle, c) = start().await;
    let ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}}).to_string();
    send(&c, "POST", "/api/v1/namespaces", JSON, &ns).await;
    let releases = "/apis/helm.m.crossplane.io/v1beta1/namespaces/gone/releases";
    let mut held = release("held", json!({}));
    held["metadata"]["namespace"] = json!("gone");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let (code, _) = send(&c, "POST", releases, JSON, &held.to_string()).await;
    assert_eq!(code, 201);
    let (code, _) = send(&c, "DELETE", "/api/v1/namespaces/gone", JSON, "").await;
    assert_eq!(code, 200);
    let conditions = common::wait::eventually("the deleter's conditions", || async {
        let (_, ns) = send(&c, "GET", "/api/v1/namespaces/gone", JSON, "").await;
        let conditions = ns["status"]["conditions"].as_array().cloned()?;
        (conditions.len() == 5).then_some(conditions)
    })
    .await;
    let by_type = |t: &str| conditions.iter().find(|c| c["type"] == t).cloned().unwrap();
    for (t, status, reason) in [
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
        ),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted"),
        ("NamespaceContentRemaining", "True", "SomeResourcesRemain"),
        (
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
        ),
    ] {
        let c = by_type(t);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some(status), Some(reason)),
            "{c}"
        );
        assert!(c["lastTransitionTime"].is_string(), "{c}");
    }
    assert_eq!(
        by_type("NamespaceContentRemaining")["message"],
        "Some resources are remaining: releases.helm.m.crossplane.io has 1 resource instances"
    );

    let mut late = release("late", json!({}));
    late["metadata"]["namespace"] = json!("gone");
    let (code, status) = send(&c, "POST", releases, JSON, &late.to_string()).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "releases.helm.m.crossplane.io \"late\" is forbidden: unable to create new content in namespace gone because it is being terminated"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "NamespaceTerminating", "message": "namespace gone is being terminated", "field": "metadata.namespace"}])
    );

    // The held object let go, the namespace goes.
    let ops = json!([{"op": "remove", "path": "/metadata/finalizers"}]).to_string();
    send(
        &c,
        "PATCH",
        &format!("{releases}/held"),
        "application/json-patch+json",
        &ops,
    )
    .await;
    common::wait::until("the namespace gone", || async {
        send(&c, "GET", "/api/v1/namespaces/gone", JSON, "").await.0 == 404
    })
    .await;
    handle.shutdown().await;
}

// Point 9: a cluster without the Release or Usage API, and its later installation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_started_without_the_usage_crd_serves_it_once_installed() {
    use kube_sim::crds::{RELEASE_CRD, USAGE_CRD};
    let f = common::SimFleet::start_with(SimConfig {
        clusters: 2,
        without_crds: vec![USAGE_CRD.to_string()],
        ..SimConfig::default()
    })
    .await;
    let names = f.names();
    let c = f.client(&names[0]).await;
    let served = |c: kube::Client| async move {
        let (_, list) = send(
            &c,
            "GET",
            "/apis/protection.crossplane.io/v1beta1",
            JSON,
            "",
        )
        .await;
        list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["name"] == "usages")
    };
    assert!(!served(c.clone()).await);
    assert!(!f
        .installed_crds(&names[0])
        .await
        .contains(&USAGE_CRD.to_string()));
    let (code, body) = send(&c, "GET", USAGES, JSON, "").await;
    assert_eq!((code, body), (404, json!("404 page not found\n")));
    let (code, _) = send(
        &c,
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/usages.protection.crossplane.io",
        JSON,
        "",
    )
    .await;
    assert_eq!(code, 404);

    f.install_crd(&names[0], USAGE_CRD).await;
    assert!(served(c.clone()).await);
    let (code, _) = send(&c, "GET", USAGES, JSON, "").await;
    assert_eq!(code, 200);

    // The Release API goes from one cluster with its objects, and comes back empty.
    let c1 = f.client(&names[1]).await;
    let (code, _) = send(
        &c1,
        "POST",
        RELEASES,
        JSON,
        &release("a", json!({})).to_string(),
    )
    .await;
    assert_eq!(code, 201);
    f.uninstall_crd(&names[1], RELEASE_CRD).await;
    let (code, _) = send(&c1, "GET", RELEASES, JSON, "").await;
    assert_eq!(code, 404);
    f.install_crd(&names[1], RELEASE_CRD).await;
    let list = common::wait::eventually("the Release list served again", || async {
        let (code, list) = send(&c1, "GET", RELEASES, JSON, "").await;
        (code == 200).then_some(list)
    })
    .await;
    assert_eq!(list["items"], json!([]), "{list}");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_come_about_once_a_minute_and_once_more_just_before_the_timeout() {
    let (_dir, handle, client) = start().await;
    let (_, created) = send(
        &client,
        "POST",
        DEPLOYMENTS,
        JSON,
        &deployment("a").to_string(),
    )
    .await;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // A watch of 4 s: no periodic bookmark within it (they come once a minute), and the
    // one sent two seconds before its deadline.
    let started = std::time::Instant::now();
    let (code, body) = send(
        &client,
        "GET",
        &format!(
            "{DEPLOYMENTS}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=4"
        ),
        JSON,
        "",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, 200);
    assert!(took >= Duration::from_secs(4), "{took:?}");
    // One event only: `send` reads the body as one JSON value.
    assert_eq!(body["type"], "BOOKMARK", "{body}");
    assert_eq!(body["object"]["metadata"]["resourceVersion"], rv.as_str());
    // Without bookmarks asked for, the same watch ends with nothing.
    let (_, body) = send(
        &client,
        "GET",
        &format!("{DEPLOYMENTS}?watch=1&resourceVersion={rv}&timeoutSeconds=3"),
        JSON,
        "",
    )
    .await;
    assert_eq!(body, Value::String(String::new()), "{body}");
    handle.shutdown().await;
}
