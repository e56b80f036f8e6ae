//! `psql-fleet sim --state-file`: a restarted simulator is the same fleet to its clients,
//! as an API server restarted on the same etcd is. Objects come back exactly as stored,
//! resourceVersions only grow, tokens (rotated ones too), the CA and the address stay, so
//! the kubeconfigs clients hold keep working; watches from before the restart get 410.

use std::time::Duration;

use fleet_core::api::Release;
use futures::TryStreamExt;
use kube::api::WatchParams;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, WatchEvent};
use kube_sim::{self as sim, SimConfig};
use serde_json::{json, Value};
use test_support::kubectl::{kubectl, kubectl_available, text};
use test_support::sim::SimProcess;
use test_support::{eventually, until, SimFleet};

async fn releases(f: &SimFleet, cluster: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        f.client(cluster).await,
        "default",
        &ApiResource::erase::<Release>(&()),
    )
}

fn as_json(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap()
}

fn rv(o: &DynamicObject) -> u64 {
    o.metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

async fn wait_ready(api: &Api<DynamicObject>, name: &str) -> DynamicObject {
    eventually(&format!("Release {name} Ready"), || async {
        let r = api.get(name).await.ok()?;
        let ready = as_json(&r)["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_versions_tokens_and_the_address_survive_a_restart_and_old_watches_get_410() {
    let f = SimFleet::start_persistent(SimConfig {
        clusters: 2,
        ready_after: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let names = f.names();
    let api = releases(&f, &names[0]).await;
    let pp = PatchParams::apply("psql-fleet");
    let release = |name: &str| {
        json!({
            "apiVersion": "helm.m.crossplane.io/v1beta1",
            "kind": "Release",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"forProvider": {"chart": {"name": "atlas-operator", "version": "0.7.23"}, "namespace": "stackgres"}}
        })
    };
    api.patch("a", &pp, &Patch::Apply(release("a")))
        .await
        .unwrap();
    let a = wait_ready(&api, "a").await;
    f.admin(
        "POST",
        &format!("/clusters/{}/rotate-token", names[1]),
        json!(null),
    )
    .await;
    let rotated = std::fs::read_to_string(f.sim.kubeconfig_path(&names[1])).unwrap();
    // Still installing when the simulator stops: its controller must finish it after.
    let b = api
        .patch("b", &pp, &Patch::Apply(release("b")))
        .await
        .unwrap();
    let address = f.sim.addr;
    let (f, _) = f.restart(async {}).await;

    assert_eq!(f.sim.addr, address);
    let state = f.sim_dir().join("state.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", state.display());
    }
    let api = releases(&f, &names[0]).await;
    assert_eq!(as_json(&api.get("a").await.unwrap()), as_json(&a));
    let restored = api.list(&ListParams::default()).await.unwrap();
    let restored_rv: u64 = restored.metadata.resource_version.unwrap().parse().unwrap();
    assert!(restored_rv > rv(&b), "{restored_rv} after {}", rv(&b));
    // The kubeconfig with the rotated token was left as it was, and still works.
    assert_eq!(
        std::fs::read_to_string(f.sim.kubeconfig_path(&names[1])).unwrap(),
        rotated
    );
    releases(&f, &names[1])
        .await
        .list(&ListParams::default())
        .await
        .unwrap();

    let b_ready = wait_ready(&api, "b").await;
    assert_eq!(b_ready.metadata.uid, b.metadata.uid);
    assert!(rv(&b_ready) > restored_rv);

    let wp = WatchParams::default();
    let mut old = Box::pin(api.watch(&wp, &rv(&a).to_string()).await.unwrap());
    match old.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("a watch from before the restart: {other:?}"),
    }
    let mut current = Box::pin(api.watch(&wp, &restored_rv.to_string()).await.unwrap());
    match current.try_next().await.unwrap() {
        Some(WatchEvent::Modified(o)) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("a watch from the restored version: {other:?}"),
    }
    f.sim.shutdown().await;
}

#[tokio::test]
async fn a_state_file_that_cannot_be_read_is_refused_naming_it_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let out = dir.path().join("out");
    std::fs::write(&state, "{\"version\": 1, \"clusters\": [").unwrap();
    let e = sim::start(SimConfig {
        out: out.clone(),
        state_file: Some(state.clone()),
        ..SimConfig::default()
    })
    .await
    .err()
    .expect("a corrupt state file was accepted");
    assert!(e.to_string().contains(&state.display().to_string()), "{e}");
    assert!(!out.exists(), "files written before the state was read");

    let cli = std::process::Command::new(test_support::binary())
        .args(["sim", "--clusters", "1", "--out"])
        .arg(&out)
        .arg("--state-file")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
}

/// What a user does: kubectl with the kubeconfig the simulator wrote, across a SIGKILL.
#[tokio::test]
async fn kubectl_keeps_working_with_its_kubeconfig_after_the_simulator_is_killed() {
    if !kubectl_available() {
        eprintln!("SKIP: kubectl is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("out/sim-000.yaml");
    let uid = |sim: &str| {
        let kubeconfig = kubeconfig.clone();
        let sim = sim.to_string();
        async move {
            let o = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "namespace",
                    "team-a",
                    "-o",
                    "jsonpath={.metadata.uid}",
                ],
                None,
            );
            o.status.success().then(|| text(&o)).or_else(|| {
                eprintln!("{sim}: {}", text(&o));
                None
            })
        }
    };
    let first = SimProcess::start(dir.path(), 1);
    eventually("the simulator serving", || async {
        kubeconfig.exists().then_some(())?;
        kubectl(&kubeconfig, &["get", "namespace", "default"], None)
            .status
            .success()
            .then_some(())
    })
    .await;
    let o = kubectl(&kubeconfig, &["create", "namespace", "team-a"], None);
    assert!(o.status.success(), "{}", text(&o));
    let created = uid("first").await.unwrap();
    // A SIGKILL loses what the state file does not hold yet: kill once it holds team-a.
    let state = dir.path().join("state.json");
    until("the state file to hold namespace team-a", || async {
        std::fs::read_to_string(&state).is_ok_and(|s| s.contains("team-a"))
    })
    .await;
    drop(first);
    let _second = SimProcess::start(dir.path(), 1);
    let after = eventually("team-a served after the restart", || uid("second")).await;
    assert_eq!(after, created);
}
