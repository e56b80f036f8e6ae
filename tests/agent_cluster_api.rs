//! End to end: clusters found on a simulated Cluster API management cluster
//! (`run --cluster-api`). A `Cluster` whose control plane is not initialised is waited for,
//! not an error; once initialised, with the kubeconfig Secret Cluster API writes beside it,
//! it gets the selector claim its labels match, without restarting the agent; relabelled
//! out of the selector, or deleted, it has the claim's objects pruned in the safe order.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_core::api::cluster_api::{Cluster, ClusterSpec};
use fleet_core::testing::{cluster, selector_claim};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use psql_fleet::cluster_api::{Settings, CLUSTER_NAME_LABEL};
use test_support::audit::{assert_pruned_in_safe_order, deletes};
use test_support::{until, AgentOptions, SimFleet};

const NAMESPACE: &str = "capi";

/// Creates the Cluster `name` labelled `env`, its control plane not up yet.
async fn create_cluster(api: &Api<Cluster>, name: &str, env: &str) {
    let mut cluster = Cluster::new(name, ClusterSpec::default());
    cluster.metadata.labels = Some(BTreeMap::from([("env".to_string(), env.to_string())]));
    api.create(&PostParams::default(), &cluster).await.unwrap();
}

/// Says, as Cluster API's controllers do, that `name`'s control plane is initialised.
async fn initialise(api: &Api<Cluster>, name: &str) {
    let status = serde_json::json!({"status": {
        "phase": "Provisioned",
        "controlPlaneReady": true,
        "infrastructureReady": true,
        "conditions": [{"type": "ControlPlaneInitialized", "status": "True", "lastTransitionTime": "2026-12-03T00:00:00Z"}]
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Writes `<name>-kubeconfig` as Cluster API does, holding the simulator's kubeconfig of
/// the cluster `name`.
async fn write_kubeconfig(f: &SimFleet, api: &Api<Secret>, name: &str) {
    let bytes = std::fs::read(f.sim_dir().join(format!("{name}.yaml"))).unwrap();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{name}-kubeconfig")),
            labels: Some(BTreeMap::from([(
                CLUSTER_NAME_LABEL.to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("cluster.x-k8s.io/secret".into()),
        data: Some(BTreeMap::from([("value".to_string(), ByteString(bytes))])),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_found_on_cluster_api_are_served_relabelled_and_pruned_without_a_restart() {
    let management = "sim-000".to_string();
    let f = SimFleet::start_with(kube_sim::SimConfig {
        clusters: 4,
        ready_after: Duration::from_millis(300),
        cluster_api: vec![management.clone()],
        ..kube_sim::SimConfig::default()
    })
    .await;
    let (w1, w2, w3) = (f.names[1].clone(), f.names[2].clone(), f.names[3].clone());
    // The workload clusters come from Cluster API only; the management cluster stays a
    // cluster file, matching no claim.
    for name in [&w1, &w2, &w3] {
        f.remove(&format!("clusters/{name}.yaml"));
        f.namespace(name, "db").await;
    }
    f.put(&cluster(&management).label("env", "management"));
    f.put(
        &selector_claim("db", &[("env", "prod")])
            .namespace("db")
            .install_namespace("db"),
    );

    let client = f.client(&management).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    // Provisioning: its kubeconfig is written, its control plane is not up yet.
    create_cluster(&clusters, &w1, "prod").await;
    write_kubeconfig(&f, &secrets, &w1).await;

    let agent = f
        .start_agent(AgentOptions {
            cluster_api: Some(Settings {
                kubeconfig: Some(f.sim_dir().join(format!("{management}.yaml"))),
                namespaces: vec![NAMESPACE.into()],
            }),
            ..AgentOptions::default()
        })
        .await;
    let waiting = agent
        .wait_for("w1 to be waited for", |r| {
            r.cluster_api
                .as_ref()
                .is_some_and(|c| !c.waiting.is_empty())
                && r.source.revision.is_some()
        })
        .await;
    let found = waiting.cluster_api.unwrap();
    assert_eq!(found.clusters, 0);
    assert_eq!(found.waiting[0].cluster, format!("{NAMESPACE}/{w1}"));
    assert!(
        found.waiting[0]
            .reason
            .contains("control plane not initialised"),
        "{:?}",
        found.waiting
    );
    assert!(waiting.source.rejected.is_none(), "waiting is not an error");
    assert!(!waiting.clusters.contains_key(&w1));
    assert!(f.live_objects(&w1).is_empty());

    // Its control plane comes up: served without restarting the agent.
    initialise(&clusters, &w1).await;
    agent.wait_ready(&[(&w1, 1), (&management, 0)]).await;
    assert_eq!(f.live_objects(&w1).len(), 3, "{:?}", f.live_objects(&w1));

    // Two more, created initialised with their Secrets, as a cluster pivoted in would be.
    for name in [&w2, &w3] {
        create_cluster(&clusters, name, "prod").await;
        write_kubeconfig(&f, &secrets, name).await;
        initialise(&clusters, name).await;
    }
    let report = agent.wait_ready(&[(&w1, 1), (&w2, 1), (&w3, 1)]).await;
    assert_eq!(report.cluster_api.unwrap().clusters, 3);
    // The revision names the commit (here the directory's content hash) and the inventory.
    let revision = report.source.revision.unwrap();
    assert!(revision.contains('-'), "{revision}");
    assert!(f.deletions().is_empty(), "{:?}", f.deletions());

    // w2 relabelled out of the selector: its copy of the claim is pruned, safely.
    let mark = f.audit(&w2).len();
    let dev = serde_json::json!({"metadata": {"labels": {"env": "dev"}}});
    clusters
        .patch(&w2, &PatchParams::default(), &Patch::Merge(&dev))
        .await
        .unwrap();
    until("w2's three deletes", || async {
        deletes(&f.audit(&w2)[mark..]).len() == 3
    })
    .await;
    assert_pruned_in_safe_order(&f.audit(&w2)[mark..], "db");

    // w3 deleted on the management cluster: pruned too, through its Secret still there.
    let mark = f.audit(&w3).len();
    clusters
        .delete(&w3, &DeleteParams::default())
        .await
        .unwrap();
    until("w3's three deletes", || async {
        deletes(&f.audit(&w3)[mark..]).len() == 3
    })
    .await;
    assert_pruned_in_safe_order(&f.audit(&w3)[mark..], "db");
    until("w2's and w3's objects to be gone", || async {
        f.live_objects(&w2).is_empty() && f.live_objects(&w3).is_empty()
    })
    .await;
    let report = agent
        .wait_for("w3 to leave the fleet", |r| !r.clusters.contains_key(&w3))
        .await;
    assert_eq!(report.clusters[&w2].claims.len(), 0);
    assert_eq!(f.live_objects(&w1).len(), 3, "w1 keeps its objects");
    // Besides the test's own deletion of the Cluster object on the management cluster.
    let deleted: Vec<_> = f
        .deletions()
        .into_iter()
        .filter(|e| e.cluster != management)
        .collect();
    assert_eq!(deleted.len(), 6, "{deleted:?}");
    assert!(deleted.iter().all(|e| e.cluster == w2 || e.cluster == w3));

    // No kubeconfig reaches the status.
    let token = std::fs::read_to_string(f.sim_dir().join(format!("{w1}.yaml"))).unwrap();
    let token = token
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string();
    let body = agent.get("/api/v1/status").await.unwrap();
    assert!(!body.contains(&token));
    agent.stop().await;
    f.shutdown().await;
}
