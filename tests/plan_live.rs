//! `psql-fleet plan --live` against the simulator: the head compared with what the
//! clusters hold, objects written by another client and a cluster that is down included.

use std::path::Path;
use std::time::Duration;

use fleet_core::render::ObjectKind;
use fleet_core::testing::fleet;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use psql_fleet::cluster::apply::resource;
use serde_json::{json, Value};
use test_support::files::FleetRepo;
use test_support::SimFleet;

async fn apply(client: &kube::Client, object: Value) {
    let ns = object["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &resource(ObjectKind::Release));
    api.patch(
        &name,
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap();
}

fn release(namespace: &str, name: &str, fleet: &str, version: &str) -> Value {
    json!({
        "apiVersion": "helm.m.crossplane.io/v1beta1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": namespace, "labels": {"fleet.hops.ops.com.ai/fleet": fleet}},
        "spec": {"forProvider": {"chart": {"name": "stackgres-operator", "repository": "https://stackgres.io/downloads/stackgres-k8s/stackgres/helm/", "version": version}}}
    })
}

async fn plan_live(repo: &Path, credentials: &Path) -> (bool, Value) {
    let (repo, credentials) = (repo.to_path_buf(), credentials.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(test_support::binary())
            .args(["plan", "--live", "-o", "json", "--repo"])
            .arg(&repo)
            .arg("--credentials-dir")
            .arg(&credentials)
            .output()
            .unwrap();
        let plan = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        (out.status.success(), plan)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_plan_shows_what_applying_the_head_would_change_on_each_cluster() {
    let f = SimFleet::start(3, Duration::from_millis(100)).await;
    let names = f.names();
    f.put(&fleet("main").pin("stackgres-operator", "1.18.4"));
    f.claim_everywhere();
    // The fleet directory is the repository's working copy.
    let repo = FleetRepo::in_dir(f.fleet_dir());
    repo.commit("fleet");

    // Nothing on the clusters yet: every object is a create.
    let (ok, plan) = plan_live(f.fleet_dir(), f.sim_dir()).await;
    assert!(ok, "{plan:#}");
    assert_eq!(plan["against"], "live");
    assert_eq!(plan["summary"]["creates"], 9, "{plan:#}");

    // On the first cluster, someone else wrote the StackGres Release at another version
    // and left a stray Release with the fleet's label; the third cluster is down.
    let c0 = f.client(&names[0]).await;
    apply(
        &c0,
        release("default", "stackgres-operator", "main", "1.17.0"),
    )
    .await;
    apply(&c0, release("default", "stray", "main", "1.0.0")).await;
    apply(&c0, release("default", "not-ours", "other-fleet", "1.0.0")).await;
    f.faults(&names[2], json!({"down": true})).await;

    let (ok, plan) = plan_live(f.fleet_dir(), f.sim_dir()).await;
    assert!(ok, "{plan:#}");
    let clusters = plan["clusters"].as_array().unwrap();
    let first = clusters
        .iter()
        .find(|c| c["name"] == names[0].as_str())
        .unwrap();
    assert_eq!(first["creates"].as_array().unwrap().len(), 2, "{first:#}");
    let updates = first["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 1, "{first:#}");
    let versions: Vec<&Value> = updates[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == "spec.forProvider.chart.version")
        .collect();
    assert_eq!(versions.len(), 1, "{first:#}");
    assert_eq!(versions[0]["base"], "1.17.0");
    assert_eq!(versions[0]["head"], "1.18.4");
    let deletes: Vec<&str> = first["deletes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(deletes, vec!["stray"]);
    let down = clusters
        .iter()
        .find(|c| c["name"] == names[2].as_str())
        .unwrap();
    assert_eq!(down["change"], "unreachable", "{down:#}");
    assert!(down["error"].as_str().is_some());
    f.shutdown().await;
}
