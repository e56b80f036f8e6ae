//! The simulator's fault injection through `psql-fleet sim fault` (the CLI, against the
//! admin API), seen by a kube-rs client: down, latency, error rate, expire-watches (410),
//! rotate-token (401 with a Status body); and the patch verbs and strict field validation
//! the fault-free paths of the other suites do not reach.

use test_support as common;

use std::time::{Duration, Instant};

use fleet_core::api::Release;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{SimConfig, SimHandle};
use serde_json::json;

async fn client(handle: &SimHandle, cluster: &str) -> kube::Client {
    let mut config = common::sim::config(&handle.kubeconfig_path(cluster)).await;
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).unwrap()
}

/// `psql-fleet sim fault --admin ... --dir ... <args>`; its stdout, failing unless exit 0.
fn fault(handle: &SimHandle, args: &[&str]) -> String {
    let out = common::succeed(fault_command(handle).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `psql-fleet sim fault --admin ... --dir ...`, its own arguments to add.
fn fault_command(handle: &SimHandle) -> std::process::Command {
    let mut command = common::psql_fleet(["sim", "fault", "--admin", &handle.admin_url()]);
    command.arg("--dir").arg(&handle.dir);
    command
}

/// Two simulated clusters, and the folder of their kubeconfigs.
async fn start() -> (tempfile::TempDir, SimHandle) {
    common::sim::start(SimConfig {
        clusters: 2,
        ready_after: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
}

fn release(name: &str) -> Release {
    serde_json::from_value(json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"forProvider": {"chart": {"name": "atlas-operator", "version": "0.7.23"}, "namespace": "stackgres"}}
    }))
    .unwrap()
}

fn api_code(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API Status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_latency_and_error_rate_apply_to_one_cluster_and_clear_with_up() {
    let (_dir, handle) = start().await;
    let (a, b) = (&handle.cluster_names[0], &handle.cluster_names[1]);
    let (ca, cb) = (client(&handle, a).await, client(&handle, b).await);
    let (ra, rb): (Api<Release>, Api<Release>) = (
        Api::namespaced(ca.clone(), "default"),
        Api::namespaced(cb.clone(), "default"),
    );

    fault(&handle, &["down", a]);
    match ra.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => panic!("a down cluster answered {s:?}"),
        Err(_) => {}
        Ok(_) => panic!("a down cluster answered a list"),
    }
    assert!(
        rb.list(&Default::default()).await.is_ok(),
        "the other cluster is up"
    );

    fault(&handle, &["latency", a, "700"]);
    let started = Instant::now();
    ra.list(&Default::default()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    fault(&handle, &["errors", a, "1"]);
    let (code, reason, message) = api_code(ra.list(&Default::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"), "{message}");
    let admin = fault(&handle, &["up", a]);
    assert!(
        admin.contains("\"errorRate\":0.0") || admin.contains("\"errorRate\":0"),
        "{admin}"
    );
    ra.list(&Default::default()).await.unwrap();

    // An error rate outside 0-1 is refused by the admin API.
    let out = fault_command(&handle)
        .args(["errors", a, "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_watches_ends_open_watches_and_answers_410_for_older_versions() {
    let (_dir, handle) = start().await;
    let a = &handle.cluster_names[0];
    let api: Api<Release> = Api::namespaced(client(&handle, a).await, "default");
    let created = api
        .create(&PostParams::default(), &release("r1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut open = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();

    fault(&handle, &["expire-watches", a]);
    // The open watch ends (events already queued may still arrive first).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while open.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the open watch was not closed");
    let mut again = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), again.next()).await {
        Ok(Some(Ok(WatchEvent::Error(e)))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"))
        }
        Ok(Some(Err(kube::Error::Api(s)))) => assert_eq!(s.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_token_refuses_the_old_token_with_a_status_body() {
    let (_dir, handle) = start().await;
    let (a, b) = (&handle.cluster_names[0], &handle.cluster_names[1]);
    let before = std::fs::read_to_string(handle.kubeconfig_path(a)).unwrap();
    let old: Api<Release> = Api::namespaced(client(&handle, a).await, "default");
    let other: Api<Release> = Api::namespaced(client(&handle, b).await, "default");

    // --no-write: the new token is printed, the file is left alone, the old token fails.
    let answer: serde_json::Value =
        serde_json::from_str(&fault(&handle, &["rotate-token", a, "--no-write"])).unwrap();
    let token = answer["token"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(handle.kubeconfig_path(a)).unwrap(),
        before
    );
    let (code, reason, _) = api_code(old.list(&Default::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    assert!(
        other.list(&Default::default()).await.is_ok(),
        "only one cluster rotated"
    );

    // Without --no-write the kubeconfig is rewritten with the newest token, which works.
    fault(&handle, &["rotate-token", a]);
    let after = std::fs::read_to_string(handle.kubeconfig_path(a)).unwrap();
    assert_ne!(after, before);
    assert!(
        !after.contains(token),
        "the kubeconfig holds a token already rotated out"
    );
    let fresh: Api<Release> = Api::namespaced(client(&handle, a).await, "default");
    fresh.list(&Default::default()).await.unwrap();
    let (code, _, _) = api_code(old.list(&Default::default()).await.unwrap_err());
    assert_eq!(code, 401);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_patch_merge_patch_and_strict_field_validation() {
    let (_dir, handle) = start().await;
    let a = &handle.cluster_names[0];
    let c = client(&handle, a).await;
    let api: Api<Release> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &release("p1"))
        .await
        .unwrap();

    let merged = api
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rollbackLimit": 5, "forProvider": {"chart": {"version": "0.7.22"}}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.spec.rollback_limit, Some(5));
    assert_eq!(
        merged.spec.for_provider.chart.version.as_deref(),
        Some("0.7.22")
    );
    // The merge kept what it did not name.
    assert_eq!(
        merged.spec.for_provider.chart.name.as_deref(),
        Some("atlas-operator")
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/rollbackLimit", "value": 5},
        {"op": "replace", "path": "/spec/rollbackLimit", "value": 2}
    ]))
    .unwrap();
    let patched = api
        .patch("p1", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.spec.rollback_limit, Some(2));
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/rollbackLimit", "value": 99}
    ]))
    .unwrap();
    let (code, _, _) = api_code(
        api.patch("p1", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "a failed JSON patch test op");

    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(c, "default", &kube::api::ApiResource::erase::<Release>(&()));
    let strict = PatchParams {
        field_validation: Some(kube::api::ValidationDirective::Strict),
        ..PatchParams::default()
    };
    let (code, reason, message) = api_code(
        dynamic
            .patch(
                "p1",
                &strict,
                &Patch::Merge(json!({"spec": {"rollbackLimitt": 1}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"), "{message}");
    assert!(message.contains("rollbackLimitt"), "{message}");
    // Without Strict the unknown field is dropped, not stored.
    let lenient = dynamic
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rollbackLimitt": 1}})),
        )
        .await
        .unwrap();
    assert!(lenient.data["spec"].get("rollbackLimitt").is_none());
    handle.shutdown().await;
}
