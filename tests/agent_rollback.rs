//! End to end against the simulator: rollback. A staging wave under `rollback: auto` whose
//! new chart version the simulated chart repository does not have fails its timeout, and
//! its clusters go back to the chart versions they ran, the claim the failed revision
//! added pruned in the safe order and nothing of the earlier revision deleted; the
//! rollout halts saying both why, and a resume tries the revision again from that wave.
//! `psql-fleet rollout undo` does the same to a wave that is baking.

use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave, Fleet};
use psql_fleet::agent::control::TOKEN_ENV as CONTROL_TOKEN_ENV;
use psql_fleet::cli::status::request;
use psql_fleet::status::{RolloutStatus, StatusReport, WaveStatus};
use test_support::agent::CONTROL_TOKEN;
use test_support::audit::{
    accepted_deletions, agent_release_writes, release_version_in, RELEASES, USAGES,
};
use test_support::{until, Agent, AgentOptions, SimFleet};

/// Waves dev, staging (two clusters, `rollback: auto`, a 3 s timeout) and prod, pinned to
/// `stackgres` but for staging's own pin, when given.
fn settings(stackgres: &str, staging: Option<&str>, staging_bake: &str) -> Fleet {
    let mut f = fleet("main")
        .force(true)
        .pin("stackgres-operator", stackgres)
        .wave(wave("dev", &[("env", "dev")]).timeout("20s"))
        .wave(
            wave("staging", &[("env", "staging")])
                .bake_time(staging_bake)
                .timeout("3s")
                .rollback_auto(),
        )
        .wave(wave("prod", &[("env", "prod")]).timeout("20s"));
    if let Some(v) = staging {
        f = f.override_pins(&[("env", "staging")], &[("stackgres-operator", v)]);
    }
    f
}

/// Four simulated clusters, dev, staging x2 and prod, one claim each, rolled out at
/// 1.18.4 by a running agent; the names in that order, and the first revision.
async fn rolled_out(staging_bake: &str) -> (SimFleet, [String; 4], Agent, String) {
    let f = SimFleet::start(4, Duration::from_millis(200)).await;
    for (name, env) in f.names.iter().zip(["dev", "staging", "staging", "prod"]) {
        f.put(&cluster(name).label("env", env));
        f.put(&claim("app", name));
    }
    f.put(&settings("1.18.4", None, staging_bake));
    let a = f
        .start_agent(AgentOptions {
            interval: Some(Duration::from_secs(5)),
            ..AgentOptions::default()
        })
        .await;
    let first = a
        .wait_for("the first revision everywhere", |s| {
            rollout_complete(s, None)
        })
        .await;
    let revision = first.rollout.unwrap().revision;
    let names = [0, 1, 2, 3].map(|i| f.names[i].clone());
    (f, names, a, revision)
}

fn rollout_complete(s: &StatusReport, revision: Option<&str>) -> bool {
    s.rollout
        .as_ref()
        .is_some_and(|r| r.phase == "complete" && revision.is_none_or(|rev| r.revision == rev))
        && s.clusters
            .values()
            .all(|c| !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
}

fn wave_of<'a>(r: &'a RolloutStatus, name: &str) -> &'a WaveStatus {
    r.waves.iter().find(|w| w.name == name).unwrap()
}

fn at(time: &Option<String>) -> jiff::Timestamp {
    time.as_deref().unwrap().parse().unwrap()
}

/// The version of the `app` claim's StackGres Release (in `default`): while the claim a
/// failed revision added to one cluster is pruned, its own Release is there too.
fn stackgres_version(f: &SimFleet, cluster: &str) -> Option<String> {
    release_version_in(&f.sim, cluster, Some("default"), "stackgres-operator")
}

/// Every claim of `clusters` ready (at whatever revision each is given).
fn ready(s: &StatusReport, clusters: &[&String]) -> bool {
    clusters.iter().all(|c| {
        s.clusters
            .get(*c)
            .is_some_and(|c| !c.claims.is_empty() && c.claims.iter().all(|c| c.ready))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wave_under_rollback_auto_goes_back_to_the_chart_versions_it_ran() {
    let (f, [dev, stg_a, stg_b, prod], a, first) = rolled_out("0s").await;
    let mark = f.audit_all().len();

    // The bump gives staging a version the chart repository does not have, and a claim
    // of its own to one staging cluster: one revision (one settle of the directory).
    f.namespace(&stg_a, "extra").await;
    f.put(
        &claim("extra", &stg_a)
            .namespace("extra")
            .install_namespace("extra"),
    );
    f.put(&settings("1.19.0", Some("1.99.0"), "0s"));
    let halted = a
        .wait_for("the staging wave to fail and roll back", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.revision != first && wave_of(r, "staging").rolled_back.is_some())
        })
        .await;
    let r = halted.rollout.clone().unwrap();
    let h = r.halted.clone().unwrap();
    assert_eq!((h.wave.as_str(), h.by_operator), ("staging", false));
    let short = &first[..12];
    assert!(
        h.reason
            .starts_with(&format!("rolled back 2 clusters to {short}; the wave failed: not ready within the wave's timeout of 3s")),
        "{h:?}"
    );
    assert!(h.reason.contains("1.99.0"), "{h:?}");
    let staging = wave_of(&r, "staging");
    assert_eq!(staging.state, "failed");
    let back = staging.rolled_back.clone().unwrap();
    assert_eq!(back.clusters, vec![stg_a.clone(), stg_b.clone()]);
    assert_eq!(
        (back.to.clone(), back.by.as_str()),
        (vec![first.clone()], "auto")
    );
    assert_eq!(wave_of(&r, "dev").state, "complete");
    assert_eq!(wave_of(&r, "prod").state, "halted");

    // Every staging cluster runs what it ran before, ready; the claim the failed revision
    // added is gone.
    let settled = a
        .wait_for("staging back on 1.18.4 and ready", |s| {
            ready(s, &[&stg_a, &stg_b])
                && s.clusters[&stg_a].claims.len() == 1
                && [&stg_a, &stg_b]
                    .iter()
                    .all(|c| stackgres_version(&f, c).as_deref() == Some("1.18.4"))
        })
        .await;
    assert!(settled.rollout.unwrap().halted.is_some());
    until("the added claim's objects pruned", || async {
        f.live_objects(&stg_a)
            .iter()
            .all(|o| !o.starts_with("extra/"))
    })
    .await;
    assert_eq!(stackgres_version(&f, &dev).as_deref(), Some("1.19.0"));
    assert_eq!(stackgres_version(&f, &prod).as_deref(), Some("1.18.4"));

    // Nothing the earlier revision had was deleted: the only deletions are the added
    // claim's, Atlas before StackGres; prod was not written at all.
    let after = f.audit_all()[mark..].to_vec();
    let deleted: Vec<String> = accepted_deletions(after.clone())
        .iter()
        .filter(|e| e.resource == RELEASES || e.resource == USAGES)
        .map(|e| {
            format!(
                "{} {}/{}",
                e.cluster,
                e.namespace.clone().unwrap_or_default(),
                e.name.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        deleted,
        vec![
            format!("{stg_a} extra/atlas-operator"),
            format!("{stg_a} extra/stackgres-operator"),
        ],
        "{after:?}"
    );
    assert!(
        agent_release_writes(&after)
            .iter()
            .all(|e| e.cluster != prod),
        "{after:?}"
    );

    let metrics = a.metrics().await;
    for (wave, n) in [("dev", 0), ("staging", 1), ("prod", 0)] {
        assert!(
            metrics.contains(&format!(
                "psql_fleet_rollbacks_total{{wave=\"{wave}\"}} {n}"
            )),
            "{wave} {n}: {metrics}"
        );
    }
    assert!(metrics.contains(r#"psql_fleet_rollout_wave{state="failed",wave="staging"} 1"#));

    // A resume tries the same revision again from staging: given it, staging fails and
    // goes back once more.
    let server = a.server.clone();
    let (code, _, body) = tokio::task::spawn_blocking(move || {
        request(
            &server,
            "POST",
            "/api/v1/rollout/resume",
            Some("{}"),
            Some(CONTROL_TOKEN),
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let mark = f.audit_all().len();
    let again = a
        .wait_for("staging to fail and roll back a second time", |s| {
            s.rollout.as_ref().is_some_and(|r| {
                wave_of(r, "staging")
                    .rolled_back
                    .as_ref()
                    .is_some_and(|b| at(&b.at) > at(&back.at))
            })
        })
        .await;
    assert_eq!(wave_of(&again.rollout.unwrap(), "staging").state, "failed");
    let retried: Vec<String> = agent_release_writes(&f.audit_all()[mark..])
        .iter()
        .map(|e| e.cluster.clone())
        .collect();
    assert!(
        retried.contains(&stg_a) && retried.contains(&stg_b),
        "{retried:?}"
    );
    assert!(!retried.contains(&prod), "{retried:?}");
    until("the second rollback counted", || async {
        a.metrics()
            .await
            .contains(r#"psql_fleet_rollbacks_total{wave="staging"} 2"#)
    })
    .await;
    a.stop().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_gives_a_baking_wave_its_previous_versions_and_halts() {
    let (f, [dev, stg_a, stg_b, prod], a, first) = rolled_out("0s").await;
    let mark = f.audit_all().len();
    f.put(&settings("1.19.0", None, "10m"));
    a.wait_for("staging baking at 1.19.0", |s| {
        s.rollout
            .as_ref()
            .is_some_and(|r| r.revision != first && wave_of(r, "staging").state == "baking")
    })
    .await;
    for c in [&dev, &stg_a, &stg_b] {
        assert_eq!(stackgres_version(&f, c).as_deref(), Some("1.19.0"), "{c}");
    }

    let server = a.server.clone();
    let (codes, out) = tokio::task::spawn_blocking(move || {
        let token = Some(CONTROL_TOKEN);
        let codes = [
            // Without the token nothing is done; a wave that gave nothing has nothing
            // to undo.
            request(&server, "POST", "/api/v1/rollout/undo", Some("{}"), None),
            request(
                &server,
                "POST",
                "/api/v1/rollout/undo",
                Some(r#"{"wave": "prod"}"#),
                token,
            ),
            request(&server, "GET", "/api/v1/rollout/undo", None, token),
        ]
        .map(|r| r.unwrap().0);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_psql-fleet"))
            .args([
                "rollout",
                "undo",
                "--reason",
                "latency up",
                "--server",
                &server,
            ])
            .env(CONTROL_TOKEN_ENV, CONTROL_TOKEN)
            .output()
            .unwrap();
        (codes, out)
    })
    .await
    .unwrap();
    assert_eq!(codes, [401, 409, 405]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let short = &first[..12];
    assert!(
        text.contains(&format!(
            "halted at wave staging: rolled back 2 clusters to {short} by an operator: latency up"
        )),
        "{text}"
    );

    a.wait_for("staging back on 1.18.4 and ready", |s| {
        ready(s, &[&stg_a, &stg_b])
            && [&stg_a, &stg_b]
                .iter()
                .all(|c| stackgres_version(&f, c).as_deref() == Some("1.18.4"))
    })
    .await;
    let r = a.report().await.rollout.unwrap();
    assert_eq!(wave_of(&r, "staging").state, "halted");
    assert_eq!(
        wave_of(&r, "staging").rolled_back.as_ref().unwrap().by,
        "tests"
    );
    assert_eq!(stackgres_version(&f, &dev).as_deref(), Some("1.19.0"));
    assert_eq!(stackgres_version(&f, &prod).as_deref(), Some("1.18.4"));
    assert_eq!(accepted_deletions(f.audit_all()[mark..].to_vec()), vec![]);
    let metrics = a.metrics().await;
    assert!(
        metrics.contains(r#"psql_fleet_rollbacks_total{wave="staging"} 1"#),
        "{metrics}"
    );
    a.stop().await;
    f.shutdown().await;
}
