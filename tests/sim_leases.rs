//! `coordination.k8s.io/v1` Leases on every simulated cluster, as leader electors use them:
//! optimistic concurrency (a stale `resourceVersion` is 409 Conflict, a second create 409
//! AlreadyExists, both as Status objects), get, list, watch and patch, discovery, and the
//! real kubectl.

use test_support as common;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent};
use kube::discovery::{ApiResource, Discovery};
use kube_sim::SimConfig;
use serde_json::json;

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test]
async fn an_update_with_a_stale_resource_version_is_a_409_conflict_and_changes_nothing() {
    let (_dir, _handle, _name, client) = common::sim::one_cluster().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &lease("psql-fleet", "a"))
        .await
        .unwrap();
    let read = api.get("psql-fleet").await.unwrap();
    assert_eq!(
        read.metadata.resource_version,
        created.metadata.resource_version
    );

    // Two electors read the same version; the first update wins.
    let mut first = read.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let won = api
        .replace("psql-fleet", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        won.metadata.resource_version,
        read.metadata.resource_version
    );

    let mut second = read.clone();
    second.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = api
        .replace("psql-fleet", &PostParams::default(), &second)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not a Status: {err:?}");
    };
    assert_eq!(status.code, 409, "{status:?}");
    assert_eq!(status.reason, "Conflict", "{status:?}");
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"psql-fleet\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let now = api.get("psql-fleet").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(now.metadata.resource_version, won.metadata.resource_version);

    // With the current version the update goes through.
    let mut third = api.get("psql-fleet").await.unwrap();
    third.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let updated = api
        .replace("psql-fleet", &PostParams::default(), &third)
        .await
        .unwrap();
    assert_eq!(updated.spec.unwrap().holder_identity.as_deref(), Some("c"));
}

#[tokio::test]
async fn a_second_create_of_a_lease_is_a_409_already_exists() {
    let (_dir, _handle, _name, client) = common::sim::one_cluster().await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &lease("l", "a"))
        .await
        .unwrap();
    let err = api
        .create(&PostParams::default(), &lease("l", "b"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not a Status: {err:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(
        status.message,
        "leases.coordination.k8s.io \"l\" already exists"
    );
    assert_eq!(
        api.get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn leases_are_discovered_listed_watched_and_patched() {
    let (_dir, _handle, _name, client) = common::sim::one_cluster().await;
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.kind == "Lease")
        .expect("Lease is discovered");
    assert_eq!(
        resource,
        ApiResource::erase::<Lease>(&()),
        "group, version and plural"
    );
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let api: Api<Lease> = Api::namespaced(client, "default");
    let mut watch = api
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &lease("w", "a"))
        .await
        .unwrap();
    match watch.try_next().await.unwrap() {
        Some(WatchEvent::Added(l)) => assert_eq!(l.metadata.name.as_deref(), Some("w")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let patched = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "b"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().holder_identity.as_deref(), Some("b"));
    match watch.try_next().await.unwrap() {
        Some(WatchEvent::Modified(l)) => {
            assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("b"))
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // A merge patch carrying a stale resourceVersion is a precondition, as on a real server.
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": "c"}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    // A wrongly typed field is refused as the API server's decoder refuses it.
    let err = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"leaseDurationSeconds": "fifteen"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 400),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_leases_with_their_holder() {
    let Some((_dir, handle, k)) = common::kubectl::on_sim(SimConfig {
        clusters: 1,
        ..SimConfig::default()
    })
    .await
    else {
        return;
    };
    let client = common::sim::client(&handle, &handle.cluster_names[0]).await;
    let api: Api<Lease> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &lease("psql-fleet-main", "host-a_123"),
    )
    .await
    .unwrap();
    let o = k.run(&["get", "leases"], None).await;
    let text = common::kubectl::text(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("HOLDER"), "{text}");
    assert!(text.contains("psql-fleet-main"), "{text}");
    assert!(text.contains("host-a_123"), "{text}");
    let o = k
        .run(
            &[
                "get",
                "lease",
                "psql-fleet-main",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        )
        .await;
    assert_eq!(common::kubectl::text(&o), "host-a_123");
}

/// ConfigMaps, where the agent keeps its rollout state under leader election: the same
/// optimistic concurrency, kube-apiserver's 1 MiB bound and `immutable`, and kubectl's
/// DATA column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_take_preconditions_size_bounds_and_immutability_as_kubernetes_does() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;

    let Some((_dir, handle, k)) = common::kubectl::on_sim(SimConfig {
        clusters: 1,
        ..SimConfig::default()
    })
    .await
    else {
        return;
    };
    let client = common::sim::client(&handle, &handle.cluster_names[0]).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = |name: &str, value: String, immutable: Option<bool>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("a".to_string(), value),
            ("b".into(), "2".into()),
        ])),
        immutable,
        ..ConfigMap::default()
    };
    let pp = PostParams::default();
    let created = api
        .create(&pp, &cm("state", "1".into(), None))
        .await
        .unwrap();
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh
        .data
        .as_mut()
        .unwrap()
        .insert("a".into(), "fresh".into());
    api.replace("state", &pp, &fresh).await.unwrap();
    stale
        .data
        .as_mut()
        .unwrap()
        .insert("a".into(), "stale".into());
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not a Status: {other:?}"),
    };
    let (status, _) = code(api.replace("state", &pp, &stale).await.unwrap_err());
    assert_eq!(status, 409);
    assert_eq!(api.get("state").await.unwrap().data.unwrap()["a"], "fresh");

    let (status, message) = code(
        api.create(&pp, &cm("big", "x".repeat(1024 * 1024), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("Too long"), "{message}");

    let locked = api
        .create(&pp, &cm("locked", "1".into(), Some(true)))
        .await
        .unwrap();
    let mut changed = locked.clone();
    changed
        .data
        .as_mut()
        .unwrap()
        .insert("a".into(), "2".into());
    let (status, message) = code(api.replace("locked", &pp, &changed).await.unwrap_err());
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("field is immutable"), "{message}");

    let o = k.run(&["get", "configmaps"], None).await;
    let text = common::kubectl::text(&o);
    assert!(o.status.success(), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("state "))
        .unwrap_or_default();
    assert!(
        text.contains("DATA") && row.split_whitespace().nth(1) == Some("2"),
        "{text}"
    );
    let o = k
        .run(
            &["get", "cm", "locked", "-o", "jsonpath={.immutable}"],
            None,
        )
        .await;
    assert_eq!(common::kubectl::text(&o), "true");
}
