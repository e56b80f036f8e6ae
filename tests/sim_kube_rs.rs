//! kube-rs clients against the in-process simulator: typed and dynamic lists, server-side
//! apply with `Patch::Apply`, and a `kube::runtime::watcher` that relists after an
//! injected watch expiry (410 Gone).

use test_support as common;

use std::time::Duration;

use fleet_core::api::Release;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube_sim::SimConfig;
use serde_json::json;

fn release(name: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"forProvider": {"chart": {"name": "atlas-operator", "version": version}, "namespace": "stackgres"}}
    })
}

/// The field managers of an object, in its `managedFields` order.
fn managers(meta: &kube::api::ObjectMeta) -> Vec<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect()
}

#[tokio::test]
async fn typed_and_dynamic_clients_list_and_server_side_apply() {
    let (_dir, handle) = common::sim::start(SimConfig {
        clusters: 2,
        ready_after: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let c = common::sim::client(&handle, &handle.cluster_names[1]).await;
    let api: Api<Release> = Api::namespaced(c.clone(), "default");
    let pp = PatchParams::apply("psql-fleet");
    for n in ["a", "b", "c"] {
        api.patch(n, &pp, &Patch::Apply(release(n, "0.7.23")))
            .await
            .unwrap();
    }
    let applied = api.get("a").await.unwrap();
    assert_eq!(
        applied.spec.for_provider.chart.version.as_deref(),
        Some("0.7.23")
    );
    let managers = managers(&applied.metadata);
    assert!(managers.contains(&"psql-fleet".to_string()), "{managers:?}");

    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    let selected = api
        .list(&ListParams::default().labels("app in (b,c)"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 2);

    let ar = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("helm.m.crossplane.io", "v1beta1", "Release"),
        "releases",
    );
    let dynamic: Api<DynamicObject> = Api::all_with(c.clone(), &ar);
    let all = dynamic
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    // A different manager changing a field psql-fleet owns conflicts unless forced.
    let err = api
        .patch(
            "a",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(release("a", "0.7.22")),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("expected a 409, got {other:?}"),
    }
    api.patch(
        "a",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(release("a", "0.7.22")),
    )
    .await
    .unwrap();

    // The simulated provider-helm makes them Ready.
    common::until("release b to become Ready", || async {
        let r = api.get("b").await.unwrap();
        let conditions = r.status.and_then(|s| s.conditions);
        fleet_core::api::ReleaseStatus::readiness(conditions.as_deref()).is_ready()
    })
    .await;
    handle.shutdown().await;
}

#[tokio::test]
async fn a_watcher_relists_after_its_watch_expires() {
    let (_dir, handle, name, c) = common::sim::one_cluster().await;
    let api: Api<Release> = Api::namespaced(c.clone(), "default");
    let pp = PatchParams::apply("psql-fleet");
    api.patch("first", &pp, &Patch::Apply(release("first", "0.7.23")))
        .await
        .unwrap();

    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut init_done = 0;
    while init_done == 0 {
        if let Ok(Some(watcher::Event::InitDone)) =
            tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .expect("watch event in time")
        {
            init_done += 1;
        }
    }
    // Expire the window: the open watch closes and resuming from its version gets 410, so
    // the watcher must list again (a second InitDone) and see what changed meanwhile.
    {
        let slot = handle.sim.slot(&name).unwrap();
        let state = handle.sim.state(slot);
        api.patch("second", &pp, &Patch::Apply(release("second", "0.7.23")))
            .await
            .unwrap();
        let mut store = state.store();
        store.expire();
        store.close_watchers();
    }
    let mut seen_second = false;
    while init_done < 2 || !seen_second {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("watch event in time")
        {
            Ok(Some(watcher::Event::InitDone)) => init_done += 1,
            Ok(Some(watcher::Event::InitApply(r))) | Ok(Some(watcher::Event::Apply(r))) => {
                seen_second |= r.metadata.name.as_deref() == Some("second");
            }
            _ => {}
        }
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_with_a_status_body() {
    let (_dir, handle, _, _) = common::sim::one_cluster().await;
    let mut config = common::sim::config(&handle.kubeconfig_path(&handle.cluster_names[0])).await;
    config.auth_info.token = Some("wrong".to_string().into());
    let c = kube::Client::try_from(config).unwrap();
    let api: Api<Release> = Api::namespaced(c, "default");
    match api.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 401);
            assert_eq!(s.reason, "Unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    handle.shutdown().await;
}

/// As the server-side apply docs hand `spec.replicas` over with a config holding nothing
/// else: required fields are checked in the merged object, not in the apply configuration.
#[tokio::test]
async fn a_partial_apply_configuration_is_validated_once_merged() {
    let (_dir, handle, _, c) = common::sim::one_cluster().await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(c, "default", &ApiResource::erase::<Release>(&()));
    api.patch(
        "a",
        &PatchParams::apply("psql-fleet"),
        &Patch::Apply(release("a", "0.7.23")),
    )
    .await
    .unwrap();
    let partial = |name: &str| {
        json!({"apiVersion": "helm.m.crossplane.io/v1beta1", "kind": "Release",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"rollbackLimit": 7}})
    };
    let pp = PatchParams::apply("someone-else");
    let merged = api
        .patch("a", &pp, &Patch::Apply(partial("a")))
        .await
        .unwrap();
    assert_eq!(merged.data["spec"]["rollbackLimit"], 7);
    assert_eq!(
        merged.data["spec"]["forProvider"]["chart"]["version"],
        "0.7.23"
    );
    match api.patch("new", &pp, &Patch::Apply(partial("new"))).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("spec.forProvider: Required value"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    handle.shutdown().await;
}

/// `dryRun=All` on server-side apply, as the Kubernetes API server does it: the same
/// validation and response as a real apply (the object as it would be, with its managed
/// fields), nothing stored, nothing in the log of mutating requests.
#[tokio::test]
async fn a_dry_run_apply_answers_like_an_apply_and_changes_nothing() {
    use k8s_openapi::api::apps::v1::Deployment;

    let (_dir, handle, cluster, c) = common::sim::one_cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let deployment = |replicas: serde_json::Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"containers": [{"name": "agent", "image": "psql-fleet:1"}]}}
            }
        })
    };
    let dry = PatchParams::apply("helm").dry_run();
    let audited = || handle.sim.audit.entries(Some(&cluster)).len();

    let answer = api
        .patch("agent", &dry, &Patch::Apply(deployment(json!(2))))
        .await
        .unwrap();
    assert_eq!(answer.spec.as_ref().unwrap().replicas, Some(2));
    assert!(answer.metadata.uid.is_some() && answer.metadata.creation_timestamp.is_some());
    let managers = managers(&answer.metadata);
    assert_eq!(managers, ["helm"]);
    assert!(
        api.get_opt("agent").await.unwrap().is_none(),
        "a dry run stored the object"
    );
    assert_eq!(audited(), 0, "a dry run is in the audit log");

    // The same validation as a real apply: a field of the wrong type in a Release (the
    // CRD's schema) is refused either way, with the same answer.
    let releases: Api<DynamicObject> =
        Api::namespaced_with(c.clone(), "default", &ApiResource::erase::<Release>(&()));
    let mut bad = release("bad", "0.7.23");
    bad["spec"]["forProvider"]["chart"]["version"] = json!(["0.7.23"]);
    let bad: DynamicObject = serde_json::from_value(bad).unwrap();
    let refused = |r: Result<DynamicObject, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason),
        other => panic!("not refused: {other:?}"),
    };
    let dry_answer = refused(releases.patch("bad", &dry, &Patch::Apply(&bad)).await);
    let real_answer = refused(
        releases
            .patch("bad", &PatchParams::apply("helm"), &Patch::Apply(&bad))
            .await,
    );
    assert_eq!(dry_answer, real_answer);
    assert!((400..500).contains(&dry_answer.0), "{dry_answer:?}");

    // Over an existing object: the merged result comes back, the stored one stays.
    api.patch(
        "agent",
        &PatchParams::apply("helm"),
        &Patch::Apply(deployment(json!(1))),
    )
    .await
    .unwrap();
    let before = audited();
    let answer = api
        .patch("agent", &dry, &Patch::Apply(deployment(json!(3))))
        .await
        .unwrap();
    assert_eq!(answer.spec.unwrap().replicas, Some(3));
    let stored = api.get("agent").await.unwrap();
    assert_eq!(stored.spec.unwrap().replicas, Some(1));
    assert_eq!(
        answer.metadata.resource_version, stored.metadata.resource_version,
        "a dry run bumped the resourceVersion"
    );
    assert_eq!(audited(), before);
    handle.shutdown().await;
}
