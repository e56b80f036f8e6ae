//! The real `kubectl` (on PATH) against the simulator started in-process: what the fleet
//! agent's users do by hand must work unchanged. Skips with a message when kubectl is absent.

use test_support as common;

use std::time::Duration;

use common::kubectl::{on_sim, text};
use kube_sim::SimConfig;

fn rendered(kind: &str) -> String {
    let out = common::succeed(
        common::psql_fleet(["render", "fleet", "--cluster", "dev-1", "--assume-ready"])
            .current_dir(common::root()),
    );
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    all.split("\n---")
        .filter(|d| d.contains(&format!("kind: {kind}")))
        .map(|d| format!("---\n{}\n", d.trim_start_matches("---").trim()))
        .collect()
}

/// One simulated cluster, its Releases ready at once.
fn one_cluster() -> SimConfig {
    SimConfig {
        clusters: 1,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_waits_describes_watches_and_is_refused_like_a_real_cluster() {
    let Some((_dir, handle, k)) = on_sim(SimConfig {
        clusters: 2,
        ready_after: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    else {
        return;
    };

    let o = k.run(&["get", "ns"], None).await;
    assert!(
        o.status.success() && text(&o).contains("default"),
        "{}",
        text(&o)
    );

    let releases = rendered("Release");
    let o = k.apply("psql-fleet", &releases).await;
    assert!(o.status.success(), "apply: {}", text(&o));
    assert!(text(&o).contains("serverside-applied"), "{}", text(&o));

    let o = k
        .run(
            &[
                "wait",
                "--for=condition=Ready",
                "releases.helm.m.crossplane.io",
                "--all",
                "--timeout=20s",
            ],
            None,
        )
        .await;
    assert!(o.status.success(), "wait: {}", text(&o));

    let o = k
        .run(
            &["get", "releases.helm.m.crossplane.io", "-o", "yaml"],
            None,
        )
        .await;
    let yaml = text(&o);
    assert!(
        yaml.contains("state: deployed") && yaml.contains("type: Ready"),
        "{yaml}"
    );

    let o = k.run(&["get", "releases.helm.m.crossplane.io"], None).await;
    assert!(
        text(&o).contains("CHART") && text(&o).contains("deployed"),
        "{}",
        text(&o)
    );

    let o = k
        .run(
            &[
                "describe",
                "releases.helm.m.crossplane.io",
                "stackgres-operator",
            ],
            None,
        )
        .await;
    assert!(
        o.status.success() && text(&o).contains("Ready"),
        "describe: {}",
        text(&o)
    );
    // kubectl finds the Release's Events by an involvedObject.* field selector.
    let described = text(&o);
    let events = described
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    assert!(
        events.contains("CreatedExternalResource")
            && events.contains("managed/release.helm.m.crossplane.io")
            && events.contains("Successfully requested creation of external resource"),
        "describe events: {described}"
    );

    let o = k
        .run(&["get", "deployments", "-n", "stackgres"], None)
        .await;
    assert!(text(&o).contains("stackgres-operator"), "{}", text(&o));

    // get -w prints the current state and keeps streaming until the timeout ends it.
    let o = k
        .run(
            &[
                "get",
                "releases.helm.m.crossplane.io",
                "-w",
                "--request-timeout=2s",
            ],
            None,
        )
        .await;
    assert!(text(&o).contains("atlas-operator"), "watch: {}", text(&o));

    let o = k.apply("psql-fleet", &rendered("Usage")).await;
    assert!(o.status.success(), "usage: {}", text(&o));
    let o = k
        .run(
            &[
                "delete",
                "releases.helm.m.crossplane.io",
                "stackgres-operator",
                "--wait=false",
            ],
            None,
        )
        .await;
    assert!(!o.status.success(), "delete should be refused");
    assert!(
        text(&o).contains("denied the request: This resource is in-use by 1 usage(s)"),
        "{}",
        text(&o)
    );

    let o = k.run(&["get", "ns", "--token", "wrong"], None).await;
    assert!(
        !o.status.success() && text(&o).contains("Unauthorized"),
        "{}",
        text(&o)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_field_manager_applying_another_chart_version_gets_a_409_conflict() {
    let Some((_dir, handle, k)) = on_sim(one_cluster()).await else {
        return;
    };
    let first = k.apply("psql-fleet", &rendered("Release")).await;
    assert!(first.status.success(), "{}", text(&first));
    let other = "apiVersion: helm.m.crossplane.io/v1beta1\nkind: Release\nmetadata: {name: atlas-operator, namespace: default}\nspec:\n  forProvider:\n    chart: {name: atlas-operator, version: 0.7.22}\n";
    let o = k.apply("someone-else", other).await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("conflict") && text(&o).contains("psql-fleet"),
        "{}",
        text(&o)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_which_is_decoded_or_refused_with_415() {
    let Some((_dir, handle, k)) = on_sim(one_cluster()).await else {
        return;
    };
    let created = k
        .run(&["create", "namespace", "made-by-kubectl"], None)
        .await;
    let got = k
        .run(&["get", "ns", "made-by-kubectl", "-o", "json"], None)
        .await;
    let deployment = k
        .run(&["create", "deployment", "web", "--image=nginx"], None)
        .await;
    assert!(created.status.success(), "create ns: {}", text(&created));
    assert!(got.status.success(), "get ns: {}", text(&got));
    let ns: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(ns["metadata"]["name"], "made-by-kubectl");
    assert_eq!(ns["status"]["phase"], "Active", "{ns}");
    assert!(ns["metadata"]["uid"].is_string());
    // A Deployment is not decoded from protobuf (yet): refused as a real server refuses a
    // type it cannot read, never half-stored.
    assert!(!deployment.status.success());
    assert!(
        text(&deployment).contains("unknown format"),
        "{}",
        text(&deployment)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_a_wrongly_typed_field_is_refused_as_a_real_server_refuses_it() {
    let Some((_dir, handle, k)) = on_sim(one_cluster()).await else {
        return;
    };
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: two\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n";
    let created = k.run(&["create", "-f", "-"], Some(bad)).await;
    let applied = k
        .run(&["apply", "--server-side", "-f", "-"], Some(bad))
        .await;
    let listed = k
        .run(&["get", "deployments", "-n", "default", "-o", "name"], None)
        .await;
    assert!(!created.status.success(), "create: {}", text(&created));
    assert!(
        text(&created).contains("(BadRequest)")
            && text(&created).contains(
                "cannot unmarshal string into Go struct field spec.replicas of type int32"
            ),
        "create: {}",
        text(&created)
    );
    assert!(!applied.status.success(), "apply: {}", text(&applied));
    assert!(
        text(&applied).contains("failed to create typed patch object")
            && text(&applied)
                .contains(".spec.replicas: expected numeric (int or float), got string"),
        "apply: {}",
        text(&applied)
    );
    assert!(
        listed.status.success() && !text(&listed).contains("web"),
        "nothing stored: {}",
        text(&listed)
    );
    handle.shutdown().await;
}

/// `kubectl get --raw` drops the path of a server URL, so each cluster answers at the root
/// of its kubeconfig's server (chosen by its TLS server name): health checks, both OpenAPI
/// versions, and `kubectl explain` of a CRD's kind, with the kubeconfig unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_paths_health_openapi_and_explain_work_at_the_root_of_each_cluster() {
    let Some((_dir, handle, k)) = on_sim(SimConfig {
        clusters: 2,
        ..SimConfig::default()
    })
    .await
    else {
        return;
    };
    for path in ["/readyz", "/livez", "/healthz"] {
        let o = k.run(&["get", "--raw", path], None).await;
        assert!(o.status.success(), "{path}: {}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "ok", "{path}");
    }
    let o = k.run(&["get", "--raw", "/readyz?verbose"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("[+]ping ok"), "{}", text(&o));
    assert!(text(&o).contains("readyz check passed"), "{}", text(&o));

    let o = k.run(&["get", "--raw", "/openapi/v2"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    let v2: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(
        v2["definitions"]["io.crossplane.m.helm.v1beta1.Release"]["properties"]["spec"].is_object(),
        "{v2}"
    );

    let o = k
        .run(
            &["explain", "releases.helm.m.crossplane.io.spec.forProvider"],
            None,
        )
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("chart"), "{}", text(&o));
    let o = k
        .run(&["explain", "releases.helm.m.crossplane.io"], None)
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("KIND:       Release"), "{}", text(&o));

    // The second cluster is another server name on the same address: its namespace is not
    // the first one's.
    let other = common::kubectl::Kubectl {
        kubeconfig: handle.kubeconfig_path(&handle.cluster_names[1]),
    };
    let o = k
        .run(&["create", "namespace", "only-on-the-first"], None)
        .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = other
        .run(&["get", "namespace", "only-on-the-first"], None)
        .await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("NotFound"), "{}", text(&o));
    let o = other.run(&["get", "--raw", "/livez"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_management_cluster_serves_cluster_api_clusters_and_kubectl_writes_kubeconfig_secrets() {
    let Some((_dir, handle, k)) = on_sim(SimConfig {
        clusters: 2,
        cluster_api: vec!["sim-000".into()],
        ..SimConfig::default()
    })
    .await
    else {
        return;
    };
    let workload = handle.kubeconfig_path("sim-001");
    let secret = k
        .run(
            &[
                "create",
                "secret",
                "generic",
                "sim-001-kubeconfig",
                "--type=cluster.x-k8s.io/secret",
                &format!("--from-file=value={}", workload.display()),
            ],
            None,
        )
        .await;
    assert!(secret.status.success(), "create secret: {}", text(&secret));
    let listed = k.run(&["get", "secrets"], None).await;
    let listed = text(&listed);
    let line = listed
        .lines()
        .find(|l| l.starts_with("sim-001-kubeconfig"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(
        line.get(1..3),
        Some(&["cluster.x-k8s.io/secret", "1"][..]),
        "{listed}"
    );
    let value = k
        .run(
            &[
                "get",
                "secret",
                "sim-001-kubeconfig",
                "-o",
                "jsonpath={.data.value}",
            ],
            None,
        )
        .await;
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text(&value).trim())
        .unwrap();
    assert_eq!(
        decoded,
        std::fs::read(&workload).unwrap(),
        "the bytes kubectl sent"
    );

    let cluster = "apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata: {name: sim-001, labels: {env: prod}}\nspec:\n  topology: {class: quick-start, version: v1.32.0}\n";
    let applied = k.apply("capi-test", cluster).await;
    assert!(applied.status.success(), "apply: {}", text(&applied));
    let status = r#"{"status":{"phase":"Provisioned","controlPlaneReady":true}}"#;
    let patched = k
        .run(
            &[
                "patch",
                "cluster",
                "sim-001",
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
            None,
        )
        .await;
    assert!(patched.status.success(), "patch status: {}", text(&patched));
    let got = k.run(&["get", "cl"], None).await;
    let row: Vec<String> = text(&got)
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        row[..3],
        ["sim-001", "quick-start", "Provisioned"],
        "{}",
        text(&got)
    );
    assert_eq!(
        row.last().map(String::as_str),
        Some("v1.32.0"),
        "{}",
        text(&got)
    );

    // Any other cluster is a workload cluster: no Cluster API there.
    let elsewhere = common::kubectl::Kubectl {
        kubeconfig: workload.clone(),
    };
    let o = elsewhere
        .run(&["get", "clusters.cluster.x-k8s.io"], None)
        .await;
    assert!(!o.status.success());
    assert!(
        text(&o).contains("doesn't have a resource type"),
        "{}",
        text(&o)
    );
    handle.shutdown().await;
}
