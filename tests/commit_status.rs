//! Rollout waves as GitHub commit statuses, end to end: the agent against the simulator with
//! a Git source and a fake GitHub API; every wave of every commit it rolls out ends as a
//! success status of its own context, dev before prod.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::testing::{claim, cluster, fleet, wave, Fleet, FleetFiles};
use psql_fleet::agent::commit_status::CommitStatuses;
use psql_fleet::agent::driver::WaveObserver;
use psql_fleet::github::{Client, Token};
use psql_fleet::source::git::GitRef;
use test_support::files::FleetRepo;
use test_support::github::FakeGitHub;
use test_support::{until, AgentOptions, SimFleet};

/// Two waves, dev (baking half a second) then prod, and StackGres pinned to `pin`.
fn settings(pin: &str) -> Fleet {
    fleet("default")
        .pin("stackgres-operator", pin)
        .wave(wave("dev", &[("env", "dev")]).bake_time("500ms"))
        .wave(wave("prod", &[("env", "prod")]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sets_a_status_per_wave_on_each_commit_it_rolls_out() {
    let f = SimFleet::start(2, Duration::from_millis(100)).await;
    let repo = FleetRepo::new();
    let mut files = FleetFiles::new().with(&settings("1.18.4"));
    for (name, env) in f.names.iter().zip(["dev", "prod"]) {
        files.add(&cluster(name).label("env", env));
        files.add(&claim("app", name));
    }
    repo.write(&files);
    let first = repo.commit("first");

    let gh = FakeGitHub::start().await;
    let client = Client::new(&gh.url, "acme/fleet", Token::new("ghs_x")).unwrap();
    let observers: Vec<Arc<dyn WaveObserver>> = vec![Arc::new(CommitStatuses::start(client))];
    let agent = f
        .start_agent(AgentOptions {
            reference: Some(GitRef::Branch("main".into())),
            interval: Some(Duration::from_millis(300)),
            max_concurrency: Some(2),
            observers,
            ..AgentOptions::git(repo.file_url())
        })
        .await;
    let succeeded = |sha: &str| {
        let all = gh.statuses();
        ["psql-fleet/dev", "psql-fleet/prod"].iter().all(|context| {
            all.iter()
                .any(|s| s.sha == sha && s.context == *context && s.state == "success")
        })
    };
    until(&format!("both waves to succeed on {first}"), || async {
        succeeded(&first)
    })
    .await;
    repo.write(&FleetFiles::new().with(&settings("1.19.0")));
    let second = repo.commit("bump");
    until(&format!("both waves to succeed on {second}"), || async {
        succeeded(&second)
    })
    .await;
    // Prod's "progressing" status on the bump comes after dev's success.
    let of_second: Vec<(String, String)> = gh
        .statuses()
        .into_iter()
        .filter(|s| s.sha == second)
        .map(|s| (s.context, s.description))
        .collect();
    let at = |context: &str, prefix: &str| {
        of_second
            .iter()
            .position(|(c, d)| c == context && d.starts_with(prefix))
            .unwrap_or_else(|| panic!("{context} {prefix}: {of_second:?}"))
    };
    assert!(
        at("psql-fleet/dev", "complete:") < at("psql-fleet/prod", "progressing:"),
        "{of_second:?}"
    );
    agent.stop().await;
    f.shutdown().await;
}
