//! `psql-fleet plan --live` against the simulator: the head compared with what the
//! clusters hold, objects written by another client and a cluster that is down included.

use test_support as common;

use std::path::Path;
use std::time::Duration;

use fleet_core::render::ObjectKind;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube_sim::{self as sim, SimConfig};
use psql_fleet::cluster::apply::resource;
use serde_json::{json, Value};

async fn client(kubeconfig: &Path) -> kube::Client {
    kube::Client::try_from(common::sim::config(kubeconfig).await).unwrap()
}

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
        let out = std::process::Command::new(common::binary())
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
    let out = tempfile::tempdir().unwrap();
    let handle = sim::start(SimConfig {
        clusters: 3,
        out: out.path().to_path_buf(),
        ready_after: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let names = handle.cluster_names.clone();
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("claims")).unwrap();
    std::fs::create_dir_all(repo.path().join("clusters")).unwrap();
    std::fs::write(
        repo.path().join("fleet.yaml"),
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {name: main}\nspec:\n  pins: {stackgres-operator: 1.18.4}\n",
    )
    .unwrap();
    for name in &names {
        std::fs::copy(
            out.path().join(format!("clusters/{name}.yaml")),
            repo.path().join(format!("clusters/{name}.yaml")),
        )
        .unwrap();
        std::fs::write(
            repo.path().join(format!("claims/{name}.yaml")),
            format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {name}}}\n"),
        )
        .unwrap();
    }
    common::git::git(repo.path(), &["init", "-q", "-b", "main"]);
    common::git::git(repo.path(), &["add", "."]);
    common::git::git(repo.path(), &["commit", "-q", "-m", "fleet"]);

    // Nothing on the clusters yet: every object is a create.
    let (ok, plan) = plan_live(repo.path(), out.path()).await;
    assert!(ok, "{plan:#}");
    assert_eq!(plan["against"], "live");
    assert_eq!(plan["summary"]["creates"], 9, "{plan:#}");

    // On the first cluster, someone else wrote the StackGres Release at another version
    // and left a stray Release with the fleet's label; the third cluster is down.
    let c0 = client(&handle.kubeconfig_path(&names[0])).await;
    apply(
        &c0,
        release("default", "stackgres-operator", "main", "1.17.0"),
    )
    .await;
    apply(&c0, release("default", "stray", "main", "1.0.0")).await;
    apply(&c0, release("default", "not-ours", "other-fleet", "1.0.0")).await;
    handle
        .sim
        .slot(&names[2])
        .unwrap()
        .faults
        .write()
        .unwrap()
        .down = true;

    let (ok, plan) = plan_live(repo.path(), out.path()).await;
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
    handle.shutdown().await;
}
