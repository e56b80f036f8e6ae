//! End to end against the simulator: rollout waves dev -> staging -> prod. A pin bump
//! reaches prod only after staging is ready and baked (the sim's audit log says who was
//! written when); a failure injected in staging halts the rollout before prod, with the
//! reason in status and metrics, and `resume` finishes it; an agent restart mid-rollout
//! resumes where it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_sim::{self as sim, SimConfig, SimHandle};
use psql_fleet::agent::{self, Config};
use psql_fleet::cli::sim_fault::{call, FaultAction, FaultArgs};
use psql_fleet::cli::status::{fetch, request};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;
use psql_fleet::status::{RolloutStatus, StatusReport};

const RELEASES: &str = "releases.helm.m.crossplane.io";

struct Fleet {
    sim: SimHandle,
    _out: tempfile::TempDir,
    dir: tempfile::TempDir,
    /// dev, staging, prod cluster names.
    clusters: [String; 3],
}

fn fleet_yaml(stackgres: &str, staging_bake: &str) -> String {
    format!(
        "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {{name: main}}\nspec:\n  force: true\n  pins: {{stackgres-operator: {stackgres}}}\n  rollout:\n    waves:\n    - {{name: dev, selector: {{matchLabels: {{env: dev}}}}, bakeTime: 1s, timeout: 20s}}\n    - {{name: staging, selector: {{matchLabels: {{env: staging}}}}, bakeTime: {staging_bake}, timeout: 5s}}\n    - {{name: prod, selector: {{matchLabels: {{env: prod}}}}, timeout: 20s}}\n"
    )
}

/// Three simulated clusters labelled dev, staging and prod, one claim each.
async fn fleet(staging_bake: &str) -> Fleet {
    let out = tempfile::tempdir().unwrap();
    let sim = sim::start(SimConfig {
        clusters: 3,
        out: out.path().to_path_buf(),
        ready_after: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("claims")).unwrap();
    std::fs::create_dir_all(dir.path().join("clusters")).unwrap();
    let names = sim.cluster_names.clone();
    for (name, env) in names.iter().zip(["dev", "staging", "prod"]) {
        let labels = vec![("env".to_string(), env.to_string())];
        std::fs::write(
            dir.path().join(format!("clusters/{name}.yaml")),
            sim::kubeconfig::cluster_file(name, &labels),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(format!("claims/{name}.yaml")),
            format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {name}}}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("fleet.yaml"),
        fleet_yaml("1.18.4", staging_bake),
    )
    .unwrap();
    Fleet {
        sim,
        _out: out,
        dir,
        clusters: [names[0].clone(), names[1].clone(), names[2].clone()],
    }
}

struct Agent {
    server: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), agent::Error>>,
}

fn start_agent(f: &Fleet, state_dir: &Path) -> Agent {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Config {
        source: SourceSpec::Dir(f.dir.path().to_path_buf()),
        reference: GitRef::Head,
        credentials: Credentials::default(),
        cache_dir: f.dir.path().join(".cache"),
        credentials_dir: f.sim.dir.clone(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        dry_run: false,
        allow_mass_prune: false,
        interval: Duration::from_secs(5),
        max_concurrency: 4,
        state_dir: Some(state_dir.to_path_buf()),
        webhook: None,
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent::run(config, async move {
        let _ = stop_rx.await;
    }));
    Agent {
        server: format!("http://127.0.0.1:{port}"),
        stop,
        task,
    }
}

impl Agent {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn get(server: &str, path: &str) -> Option<String> {
    let (s, p) = (server.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || fetch(&s, &p).ok())
        .await
        .unwrap()
}

async fn status(server: &str) -> Option<StatusReport> {
    get(server, "/api/v1/status")
        .await
        .map(|b| serde_json::from_str(&b).unwrap())
}

/// Polls the agent's status until `done` holds, for at most 30 s.
async fn until(server: &str, what: &str, done: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = status(server).await;
        if let Some(s) = &last {
            if done(s) {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last status: {}",
            serde_json::to_string_pretty(&last).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rollout_complete(s: &StatusReport, revision: Option<&str>) -> bool {
    s.rollout
        .as_ref()
        .is_some_and(|r| r.phase == "complete" && revision.is_none_or(|rev| r.revision != rev))
        && s.clusters
            .values()
            .all(|c| !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
}

fn wave<'a>(r: &'a RolloutStatus, name: &str) -> &'a psql_fleet::status::WaveStatus {
    r.waves.iter().find(|w| w.name == name).unwrap()
}

/// The chart version of the StackGres Release on `cluster`, as the sim stores it.
fn stackgres_version(f: &Fleet, cluster: &str) -> String {
    let slot = f.sim.sim.slot(cluster).unwrap();
    let state = f.sim.sim.state(slot);
    let res = f
        .sim
        .sim
        .shared
        .find("helm.m.crossplane.io", "v1beta1", "releases")
        .unwrap();
    let store = state.store();
    let versions: Vec<String> = store
        .list(res, None, None)
        .filter(|(k, _)| k.name == "stackgres-operator")
        .map(|(_, v)| {
            v["spec"]["forProvider"]["chart"]["version"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(versions.len(), 1, "{cluster}: {versions:?}");
    versions[0].clone()
}

/// Release writes by psql-fleet in the audit log from `from` on, as cluster names in order.
fn release_writes(f: &Fleet, from: usize) -> Vec<String> {
    f.sim.sim.audit.entries(None)[from..]
        .iter()
        .filter(|e| {
            e.resource == RELEASES
                && e.subresource.is_none()
                && e.field_manager.as_deref() == Some("psql-fleet")
                && e.code < 300
        })
        .map(|e| e.cluster.clone())
        .collect()
}

fn bump(f: &Fleet, version: &str, staging_bake: &str) {
    std::fs::write(
        f.dir.path().join("fleet.yaml"),
        fleet_yaml(version, staging_bake),
    )
    .unwrap();
}

/// One request to the simulator's admin API, as `psql-fleet sim fault` sends it.
async fn admin(f: &Fleet, path: &str, body: serde_json::Value) {
    let args = FaultArgs {
        admin: f.sim.admin_url(),
        dir: f.sim.dir.clone(),
        action: FaultAction::Audit { cluster: None },
    };
    let (code, text) = call(&args, "POST", path, &body).await.unwrap();
    assert!(code < 300, "{path}: {code} {text}");
}

fn state_dir(f: &Fleet) -> PathBuf {
    f.dir.path().join(".state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_bump_rolls_through_dev_staging_prod_with_bake_times() {
    let f = fleet("1s").await;
    let [dev, staging, prod] = f.clusters.clone();
    let a = start_agent(&f, &state_dir(&f));
    let first = until(&a.server, "the first revision everywhere", |s| {
        rollout_complete(s, None)
    })
    .await;
    let first_revision = first.rollout.unwrap().revision;
    let mark = f.sim.sim.audit.entries(None).len();

    bump(&f, "1.19.0", "1s");
    let done = until(&a.server, "the bump everywhere", |s| {
        rollout_complete(s, Some(&first_revision))
    })
    .await;
    for c in [&dev, &staging, &prod] {
        assert_eq!(stackgres_version(&f, c), "1.19.0", "{c}");
    }
    // Writes went wave by wave: every dev write before any staging write, every staging
    // write before any prod write.
    let writes = release_writes(&f, mark);
    let order: Vec<&str> = writes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .chunk_by(|a, b| a == b)
        .map(|g| g[0])
        .collect();
    assert_eq!(
        order,
        vec![dev.as_str(), staging.as_str(), prod.as_str()],
        "{writes:?}"
    );
    // Each gated wave was ready and baked its full bake time before the next started.
    let r = done.rollout.unwrap();
    let ts = |s: &Option<String>| s.as_deref().unwrap().parse::<jiff::Timestamp>().unwrap();
    for (w, next) in [("dev", "staging"), ("staging", "prod")] {
        let (w, next) = (wave(&r, w), wave(&r, next));
        assert_eq!(w.state, "complete");
        let baked = ts(&w.finished_at).duration_since(ts(&w.ready_since));
        assert!(baked >= jiff::SignedDuration::from_secs(1), "{w:?}");
        assert!(ts(&next.started_at) >= ts(&w.finished_at), "{w:?} {next:?}");
    }
    let metrics = get(&a.server, "/metrics").await.unwrap();
    for w in ["dev", "staging", "prod"] {
        assert!(
            metrics.contains(&format!(
                "psql_fleet_rollout_wave{{state=\"complete\",wave=\"{w}\"}} 1"
            )),
            "{metrics}"
        );
    }
    assert!(metrics.contains(&format!(
        "psql_fleet_cluster_wave_info{{cluster=\"{staging}\",wave=\"staging\"}} 1"
    )));
    a.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_staging_halts_the_rollout_before_prod_until_resumed() {
    let f = fleet("1s").await;
    let [dev, staging, prod] = f.clusters.clone();
    let a = start_agent(&f, &state_dir(&f));
    let first = until(&a.server, "the first revision everywhere", |s| {
        rollout_complete(s, None)
    })
    .await;
    let first_revision = first.rollout.unwrap().revision;

    // Staging's API server answers every request with 500 InternalError.
    admin(
        &f,
        &format!("/clusters/{staging}/faults"),
        serde_json::json!({"errorRate": 1.0}),
    )
    .await;
    bump(&f, "1.19.0", "1s");
    let halted = until(&a.server, "the rollout to halt", |s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.revision != first_revision && r.phase == "halted")
    })
    .await;
    let r = halted.rollout.clone().unwrap();
    let h = r.halted.clone().unwrap();
    assert_eq!(h.wave, "staging");
    assert!(!h.by_operator);
    assert!(h.reason.contains(&staging), "{h:?}");
    assert_eq!(wave(&r, "dev").state, "complete");
    assert_eq!(wave(&r, "staging").state, "failed");
    assert_eq!(wave(&r, "prod").state, "halted");
    assert_eq!(stackgres_version(&f, &dev), "1.19.0");
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");
    let metrics = get(&a.server, "/metrics").await.unwrap();
    assert!(metrics.contains(r#"psql_fleet_rollout_wave{state="failed",wave="staging"} 1"#));
    assert!(metrics.contains(r#"psql_fleet_rollout_wave{state="halted",wave="prod"} 1"#));
    let table = halted.to_table();
    assert!(table.contains("halted at wave staging"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&prod) && l.contains("waits for wave prod")),
        "{table}"
    );
    // Prod stays on the previous revision and keeps being reconciled to it: a hand edit
    // there is corrected back to 1.18.4 (the fleet forces its fields back), not rolled
    // forward to the halted revision.
    admin(
        &f,
        &format!("/clusters/{prod}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "default",
            "patch": {"spec": {"forProvider": {"chart": {"version": "1.17.0"}}}}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stackgres_version(&f, &prod) != "1.18.4" {
        assert!(Instant::now() < deadline, "prod's hand edit not corrected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The operator fixes staging and resumes: staging is retried, then prod follows.
    admin(
        &f,
        &format!("/clusters/{staging}/faults"),
        serde_json::json!({}),
    )
    .await;
    until(&a.server, "staging reachable again", |s| {
        s.clusters.get(&staging).is_some_and(|c| c.reachable)
    })
    .await;
    // Through the command line, as an operator does.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_psql-fleet"))
            .args(args)
            .args(["--server", &a.server])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = cli(&["rollout", "status"]);
    assert!(ok && text.contains("halted at wave staging"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("staging") && l.contains("failed")),
        "{text}"
    );
    let (ok, text) = cli(&["rollout", "halt", "--reason", "again"]);
    assert!(!ok && text.contains("already halted"), "{text}");
    // The control endpoints take small JSON POSTs only.
    let server = a.server.clone();
    let codes = tokio::task::spawn_blocking(move || {
        let big = format!("{{\"reason\": \"{}\"}}", "x".repeat(5000));
        [
            request(&server, "GET", "/api/v1/rollout/resume", None),
            request(&server, "POST", "/api/v1/rollout/resume", None),
            request(&server, "POST", "/api/v1/rollout/halt", Some(&big)),
            request(
                &server,
                "POST",
                "/api/v1/rollout/halt",
                Some("{\"bogus\": 1}"),
            ),
        ]
        .map(|r| r.unwrap().0)
    })
    .await
    .unwrap();
    assert_eq!(codes, [405, 415, 413, 400]);
    let (ok, text) = cli(&["rollout", "resume"]);
    assert!(ok && text.contains("progressing"), "{text}");
    until(&a.server, "the resumed rollout to complete", |s| {
        rollout_complete(s, Some(&first_revision))
    })
    .await;
    assert_eq!(stackgres_version(&f, &prod), "1.19.0");
    a.stop().await;
    f.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_mid_rollout_resumes_where_it_was() {
    let f = fleet("4s").await;
    let [dev, staging, prod] = f.clusters.clone();
    let a = start_agent(&f, &state_dir(&f));
    let first = until(&a.server, "the first revision everywhere", |s| {
        rollout_complete(s, None)
    })
    .await;
    let first_revision = first.rollout.unwrap().revision;
    bump(&f, "1.19.0", "4s");
    until(&a.server, "staging to bake", |s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.revision != first_revision && wave(r, "staging").state == "baking")
    })
    .await;
    a.stop().await;
    let mark = f.sim.sim.audit.entries(None).len();
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");

    let b = start_agent(&f, &state_dir(&f));
    // The same rollout continues: dev stays complete, staging is judged again (not
    // taken as baked), prod waits.
    let resumed = until(&b.server, "the restarted agent's status", |s| {
        s.rollout.is_some() && s.clusters.len() == 3
    })
    .await;
    let r = resumed.rollout.unwrap();
    assert_ne!(r.revision, first_revision);
    assert_eq!(wave(&r, "dev").state, "complete");
    assert_ne!(wave(&r, "staging").state, "complete");
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");
    let done = until(&b.server, "the rollout to complete", |s| {
        rollout_complete(s, Some(&first_revision))
    })
    .await;
    let r = done.rollout.unwrap();
    let ts = |s: &Option<String>| s.as_deref().unwrap().parse::<jiff::Timestamp>().unwrap();
    let staging_wave = wave(&r, "staging");
    assert!(
        ts(&staging_wave.finished_at).duration_since(ts(&staging_wave.ready_since))
            >= jiff::SignedDuration::from_secs(4),
        "{staging_wave:?}"
    );
    // Nothing was re-rolled: after the restart only prod's Releases were written.
    let writes = release_writes(&f, mark);
    assert!(!writes.is_empty());
    assert!(
        writes.iter().all(|c| c == &prod),
        "dev {dev} / staging {staging} written again: {writes:?}"
    );
    assert_eq!(stackgres_version(&f, &prod), "1.19.0");
    b.stop().await;
    f.sim.shutdown().await;
}
