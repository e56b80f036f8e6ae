//! End to end against the simulator: rollout waves dev -> staging -> prod. A pin bump
//! reaches prod only after staging is ready and baked (the sim's audit log says who was
//! written when); a failure injected in staging halts the rollout before prod, with the
//! reason in status and metrics, and `resume` finishes it; an agent restart mid-rollout
//! resumes where it was.

use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave, Fleet};
use psql_fleet::agent::control::TOKEN_ENV as CONTROL_TOKEN_ENV;
use psql_fleet::cli::status::request;
use psql_fleet::status::{RolloutStatus, StatusReport};
use test_support::agent::CONTROL_TOKEN;
use test_support::audit::{agent_release_writes, release_version};
use test_support::{until, Agent, AgentOptions, SimFleet};

/// The fleet's waves, with `stackgres` pinned and `staging_bake` as staging's bake time.
fn settings(stackgres: &str, staging_bake: &str) -> Fleet {
    fleet("main")
        .force(true)
        .pin("stackgres-operator", stackgres)
        .wave(
            wave("dev", &[("env", "dev")])
                .bake_time("1s")
                .timeout("20s"),
        )
        .wave(
            wave("staging", &[("env", "staging")])
                .bake_time(staging_bake)
                .timeout("5s"),
        )
        .wave(wave("prod", &[("env", "prod")]).timeout("20s"))
}

/// Three simulated clusters labelled dev, staging and prod, one claim each; and their
/// names.
async fn three_waves(staging_bake: &str) -> (SimFleet, [String; 3]) {
    let f = SimFleet::start(3, Duration::from_millis(200)).await;
    for (name, env) in f.names.iter().zip(["dev", "staging", "prod"]) {
        f.put(&cluster(name).label("env", env));
        f.put(&claim("app", name));
    }
    f.put(&settings("1.18.4", staging_bake));
    let names = [f.names[0].clone(), f.names[1].clone(), f.names[2].clone()];
    (f, names)
}

/// [`three_waves`] with the agent started on it and its first revision rolled out
/// everywhere; that revision.
async fn rolled_out(staging_bake: &str) -> (SimFleet, [String; 3], Agent, String) {
    rolled_out_with(staging_bake, options()).await
}

/// [`rolled_out`], the agent started with `options`.
async fn rolled_out_with(
    staging_bake: &str,
    options: AgentOptions,
) -> (SimFleet, [String; 3], Agent, String) {
    let (f, names) = three_waves(staging_bake).await;
    let a = f.start_agent(options).await;
    let first = a
        .wait_for("the first revision everywhere", |s| {
            rollout_complete(s, None)
        })
        .await;
    let revision = first.rollout.unwrap().revision;
    (f, names, a, revision)
}

/// The agent, resyncing every 5 s so that the rollout's own steps are what moves it.
async fn start_agent(f: &SimFleet) -> Agent {
    f.start_agent(options()).await
}

fn options() -> AgentOptions {
    AgentOptions {
        interval: Some(Duration::from_secs(5)),
        ..AgentOptions::default()
    }
}

/// Staging's API server answers every request with 500 InternalError while a pin bump
/// rolls out: the rollout halts there, and this is the status that says so.
async fn halt_at_staging(f: &SimFleet, a: &Agent, staging: &str, first: &str) -> StatusReport {
    f.faults(staging, serde_json::json!({"errorRate": 1.0}))
        .await;
    f.put(&settings("1.19.0", "1s"));
    a.wait_for("the rollout to halt", |s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.revision != first && r.phase == "halted")
    })
    .await
}

fn rollout_complete(s: &StatusReport, revision: Option<&str>) -> bool {
    s.rollout
        .as_ref()
        .is_some_and(|r| r.phase == "complete" && revision.is_none_or(|rev| r.revision != rev))
        && s.clusters
            .values()
            .all(|c| !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
}

fn wave_of<'a>(r: &'a RolloutStatus, name: &str) -> &'a psql_fleet::status::WaveStatus {
    r.waves.iter().find(|w| w.name == name).unwrap()
}

/// The chart version of the StackGres Release on `cluster`, as the sim stores it.
fn stackgres_version(f: &SimFleet, cluster: &str) -> String {
    release_version(&f.sim, cluster, "stackgres-operator")
        .unwrap_or_else(|| panic!("{cluster} has no StackGres Release"))
}

/// Release writes by psql-fleet in the audit log from `from` on, as cluster names in order.
fn release_writes(f: &SimFleet, from: usize) -> Vec<String> {
    agent_release_writes(&f.audit_all()[from..])
        .into_iter()
        .map(|e| e.cluster.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_bump_rolls_through_dev_staging_prod_with_bake_times() {
    let (f, [dev, staging, prod], a, first_revision) = rolled_out("1s").await;
    let mark = f.audit_all().len();

    f.put(&settings("1.19.0", "1s"));
    let done = a
        .wait_for("the bump everywhere", |s| {
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
        let (w, next) = (wave_of(&r, w), wave_of(&r, next));
        assert_eq!(w.state, "complete");
        let baked = ts(&w.finished_at).duration_since(ts(&w.ready_since));
        assert!(baked >= jiff::SignedDuration::from_secs(1), "{w:?}");
        assert!(ts(&next.started_at) >= ts(&w.finished_at), "{w:?} {next:?}");
    }
    let metrics = a.metrics().await;
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
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_staging_halts_the_rollout_before_prod_until_resumed() {
    let (f, [dev, staging, prod], a, first_revision) = rolled_out("1s").await;
    let halted = halt_at_staging(&f, &a, &staging, &first_revision).await;
    let r = halted.rollout.clone().unwrap();
    let h = r.halted.clone().unwrap();
    assert_eq!(h.wave, "staging");
    assert!(!h.by_operator);
    assert!(h.reason.contains(&staging), "{h:?}");
    assert_eq!(wave_of(&r, "dev").state, "complete");
    assert_eq!(wave_of(&r, "staging").state, "failed");
    assert_eq!(wave_of(&r, "prod").state, "halted");
    assert_eq!(stackgres_version(&f, &dev), "1.19.0");
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");
    let metrics = a.metrics().await;
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
    f.admin(
        "POST",
        &format!("/clusters/{prod}/edit"),
        serde_json::json!({"name": "stackgres-operator", "namespace": "default",
            "patch": {"spec": {"forProvider": {"chart": {"version": "1.17.0"}}}}}),
    )
    .await;
    until(
        "prod's hand edit to be corrected back to 1.18.4",
        || async { stackgres_version(&f, &prod) == "1.18.4" },
    )
    .await;

    // The operator fixes staging and resumes: staging is retried, then prod follows.
    f.faults(&staging, serde_json::json!({})).await;
    a.wait_for("staging reachable again", |s| {
        s.clusters.get(&staging).is_some_and(|c| c.reachable)
    })
    .await;
    // Through the command line, as an operator does.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_psql-fleet"))
            .args(args)
            .args(["--server", &a.server])
            .env(CONTROL_TOKEN_ENV, CONTROL_TOKEN)
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
        let token = Some(CONTROL_TOKEN);
        [
            request(&server, "GET", "/api/v1/rollout/resume", None, token),
            request(&server, "POST", "/api/v1/rollout/resume", None, token),
            request(&server, "POST", "/api/v1/rollout/halt", Some(&big), token),
            request(
                &server,
                "POST",
                "/api/v1/rollout/halt",
                Some("{\"bogus\": 1}"),
                token,
            ),
            // Without the token, or with another, nothing is done.
            request(&server, "POST", "/api/v1/rollout/resume", Some("{}"), None),
            request(
                &server,
                "POST",
                "/api/v1/rollout/resume",
                Some("{}"),
                Some("someone-else-s-token-1234"),
            ),
        ]
        .map(|r| r.unwrap().0)
    })
    .await
    .unwrap();
    assert_eq!(codes, [405, 415, 413, 400, 401, 401]);
    let (ok, text) = cli(&["rollout", "resume", "--token-file", "/nonexistent/token"]);
    assert!(
        !ok && text.contains("cannot read the control token file"),
        "{text}"
    );
    let (ok, text) = cli(&["rollout", "resume"]);
    assert!(ok && text.contains("progressing"), "{text}");
    a.wait_for("the resumed rollout to complete", |s| {
        rollout_complete(s, Some(&first_revision))
    })
    .await;
    assert_eq!(stackgres_version(&f, &prod), "1.19.0");
    a.stop().await;
    f.shutdown().await;
}

/// A resume asks every cluster for a report at once: the retried wave is judged on passes
/// made after the resume, and a cluster whose objects did not change would otherwise make
/// its next one only at its resync (an hour here, longer than the wave's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_rollout_is_judged_on_reports_made_at_once_whatever_the_resync() {
    let long_resync = AgentOptions {
        resync: Some(Duration::from_secs(3600)),
        ..options()
    };
    let (f, [_, staging, prod], a, first) = rolled_out_with("1s", long_resync).await;
    halt_at_staging(&f, &a, &staging, &first).await;
    f.faults(&staging, serde_json::json!({})).await;
    a.wait_for("staging applied and ready again", |s| {
        s.clusters.get(&staging).is_some_and(|c| {
            c.reachable && c.last_error.is_none() && c.claims.iter().all(|c| c.ready)
        })
    })
    .await;
    let (code, _, body) = a
        .control("POST", "/api/v1/rollout/resume", Some("{}"))
        .await;
    assert_eq!(code, 200, "{body}");
    a.wait_for("the resumed rollout to complete", |s| {
        rollout_complete(s, Some(&first))
    })
    .await;
    assert_eq!(stackgres_version(&f, &prod), "1.19.0");
    a.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_mid_rollout_resumes_where_it_was() {
    let (f, [dev, staging, prod], a, first_revision) = rolled_out("4s").await;
    f.put(&settings("1.19.0", "4s"));
    a.wait_for("staging to bake", |s| {
        s.rollout.as_ref().is_some_and(|r| {
            r.revision != first_revision && wave_of(r, "staging").state == "baking"
        })
    })
    .await;
    a.stop().await;
    let mark = f.audit_all().len();
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");

    let b = start_agent(&f).await;
    // The same rollout continues: dev stays complete, staging is judged again (not
    // taken as baked), prod waits.
    let resumed = b
        .wait_for("the restarted agent's status", |s| {
            s.rollout.is_some() && s.clusters.len() == 3
        })
        .await;
    let r = resumed.rollout.unwrap();
    assert_ne!(r.revision, first_revision);
    assert_eq!(wave_of(&r, "dev").state, "complete");
    assert_ne!(wave_of(&r, "staging").state, "complete");
    assert_eq!(stackgres_version(&f, &prod), "1.18.4");
    let done = b
        .wait_for("the rollout to complete", |s| {
            rollout_complete(s, Some(&first_revision))
        })
        .await;
    let r = done.rollout.unwrap();
    let ts = |s: &Option<String>| s.as_deref().unwrap().parse::<jiff::Timestamp>().unwrap();
    let staging_wave = wave_of(&r, "staging");
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
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_that_requires_approval_waits_until_an_operator_approves_it() {
    let f = SimFleet::start(3, Duration::from_millis(200)).await;
    for (name, env) in f.names.iter().zip(["dev", "staging", "prod"]) {
        f.put(&cluster(name).label("env", env));
        f.put(&claim("app", name));
    }
    f.put(
        &fleet("main")
            .wave(wave("dev", &[("env", "dev")]).timeout("20s"))
            .wave(
                wave("staging", &[("env", "staging")])
                    .require_approval()
                    .timeout("1s"),
            )
            .wave(wave("prod", &[("env", "prod")]).timeout("20s")),
    );
    let (dev, staging, prod) = (f.names[0].clone(), f.names[1].clone(), f.names[2].clone());
    let a = start_agent(&f).await;
    a.wait_for("staging to wait for approval", |s| {
        s.rollout.as_ref().is_some_and(|r| {
            wave_of(r, "dev").state == "complete"
                && wave_of(r, "staging").state == "awaiting_approval"
        })
    })
    .await;
    // Waiting is no failure: not after the wave's 1 s timeout, not after several passes.
    a.assert_holds_for_passes("staging to keep waiting", &dev, 2, || async {
        let r = a.report().await.rollout.unwrap();
        wave_of(&r, "staging").state == "awaiting_approval"
    })
    .await;
    assert!(f.live_objects(&staging).is_empty());
    assert!(f.live_objects(&prod).is_empty());
    let metrics = a.metrics().await;
    assert!(
        metrics.contains(r#"psql_fleet_rollout_wave{state="awaiting_approval",wave="staging"} 1"#),
        "{metrics}"
    );

    // An operator approves it from the command line.
    let server = a.server.clone();
    let cli = move |args: Vec<&'static str>| {
        let server = server.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_psql-fleet"))
                    .args(args)
                    .args(["--server", &server])
                    .env(CONTROL_TOKEN_ENV, CONTROL_TOKEN)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = cli(vec!["rollout", "approve", "prod"]).await;
    assert!(!out.status.success());
    let out = cli(vec!["rollout", "approve", "staging"]).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = a
        .wait_for("the rollout complete", |s| rollout_complete(s, None))
        .await;
    let r = done.rollout.unwrap();
    assert_eq!(wave_of(&r, "staging").approved_by.as_deref(), Some("tests"));
    for c in [&dev, &staging, &prod] {
        assert_eq!(f.live_objects(c).len(), 3, "{c}");
    }
    a.stop().await;
    f.shutdown().await;
}
