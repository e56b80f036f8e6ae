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
use serde_json::json;
use test_support::files::FleetRepo;
use test_support::github::FakeGitHub;
use test_support::{until, Agent, AgentOptions, SimFleet};

/// Two waves, dev (baking half a second) then prod, and StackGres pinned to `pin`.
fn settings(pin: &str) -> Fleet {
    fleet("default")
        .pin("stackgres-operator", pin)
        .wave(wave("dev", &[("env", "dev")]).bake_time("500ms"))
        .wave(wave("prod", &[("env", "prod")]))
}

/// Two simulated clusters, dev and prod, with a claim each, committed with `settings`; a
/// fake GitHub API; and the agent on the repository, setting commit statuses there (and
/// taking wave approvals from it, with `approvals`).
struct OnGitHub {
    f: SimFleet,
    repo: FleetRepo,
    gh: FakeGitHub,
    agent: Agent,
    /// The commit of `settings`.
    first: String,
}

async fn on_github(settings: &Fleet, approvals: bool) -> OnGitHub {
    let f = SimFleet::start(2, Duration::from_millis(100)).await;
    let repo = FleetRepo::new();
    let mut files = FleetFiles::new().with(settings);
    for (name, env) in f.names.iter().zip(["dev", "prod"]) {
        files.add(&cluster(name).label("env", env));
        files.add(&claim("app", name));
    }
    repo.write(&files);
    let first = repo.commit("first");
    let gh = FakeGitHub::start().await;
    let client = Client::new(&gh.url, "acme/fleet", Token::new("ghs_x")).unwrap();
    let observers: Vec<Arc<dyn WaveObserver>> =
        vec![Arc::new(CommitStatuses::start(client.clone()))];
    let agent = f
        .start_agent(AgentOptions {
            reference: Some(GitRef::Branch("main".into())),
            interval: Some(Duration::from_millis(300)),
            max_concurrency: Some(2),
            observers,
            github_approvals: approvals.then_some(client),
            ..AgentOptions::git(repo.file_url())
        })
        .await;
    OnGitHub {
        f,
        repo,
        gh,
        agent,
        first,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sets_a_status_per_wave_on_each_commit_it_rolls_out() {
    let OnGitHub {
        f,
        repo,
        gh,
        agent,
        first,
    } = on_github(&settings("1.18.4"), false).await;
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

/// A wave that requires approval waits, and its commit status says so, until the pull
/// request of the commit approves it: not by a stranger's review, then by the wave's label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_waiting_for_approval_is_approved_from_the_pull_request_of_its_commit() {
    let gated = fleet("default")
        .pin("stackgres-operator", "1.18.4")
        .wave(wave("dev", &[("env", "dev")]))
        .wave(wave("prod", &[("env", "prod")]).require_approval());
    // The repository is kept to the end: the agent reads it.
    let OnGitHub {
        f,
        repo: _repo,
        gh,
        agent,
        first: sha,
    } = on_github(&gated, true).await;
    let prod_state = |s: &psql_fleet::status::StatusReport| {
        s.rollout
            .as_ref()
            .and_then(|r| r.waves.iter().find(|w| w.name == "prod"))
            .map(|w| w.state.clone())
    };
    agent
        .wait_for("prod to wait for approval", |s| {
            prod_state(s).as_deref() == Some("awaiting_approval")
        })
        .await;
    until("the waiting status on GitHub", || async {
        gh.statuses().iter().any(|s| {
            s.sha == sha
                && s.context == "psql-fleet/prod"
                && s.state == "pending"
                && s.description.contains("waiting for approval")
        })
    })
    .await;

    // A stranger's approving review, and a plain one, approve nothing.
    gh.answer(
        &format!("/repos/acme/fleet/commits/{sha}/pulls"),
        json!([{"number": 7, "labels": []}]),
    );
    gh.answer(
        "/repos/acme/fleet/pulls/7/reviews",
        json!([
            {"user": {"login": "mallory"}, "state": "APPROVED", "author_association": "NONE", "body": "/approve prod"},
            {"user": {"login": "alice"}, "state": "APPROVED", "author_association": "MEMBER", "body": "LGTM"}
        ]),
    );
    until("the agent to read the reviews", || async {
        gh.seen()
            .iter()
            .filter(|r| r.path_and_query.contains("/pulls/7/reviews"))
            .count()
            >= 3
    })
    .await;
    let still = agent.report().await;
    assert_eq!(prod_state(&still).as_deref(), Some("awaiting_approval"));

    // The wave's label approves it.
    gh.answer(
        &format!("/repos/acme/fleet/commits/{sha}/pulls"),
        json!([{"number": 7, "labels": [{"name": "psql-fleet/approve-prod"}]}]),
    );
    let done = agent
        .wait_for("prod approved and complete", |s| {
            prod_state(s).as_deref() == Some("complete")
        })
        .await;
    let prod = done
        .rollout
        .unwrap()
        .waves
        .into_iter()
        .find(|w| w.name == "prod")
        .unwrap();
    assert_eq!(
        prod.approved_by.as_deref(),
        Some("github label psql-fleet/approve-prod on #7")
    );
    agent.stop().await;
    f.shutdown().await;
}

/// A wave rolled back is said on the pull request of the commit too, besides its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_said_on_the_pull_request_of_the_commit() {
    // dev goes back to what it ran when it cannot be made ready in time.
    let settings = |pin: &str| {
        fleet("default")
            .pin("stackgres-operator", pin)
            .wave(wave("dev", &[("env", "dev")]).timeout("2s").rollback_auto())
            .wave(wave("prod", &[("env", "prod")]))
    };
    let OnGitHub {
        f, repo, gh, agent, ..
    } = on_github(&settings("1.18.4"), false).await;
    agent
        .wait_for("the first revision everywhere", |s| {
            s.rollout.as_ref().is_some_and(|r| r.phase == "complete")
        })
        .await;
    // A chart version the simulated provider-helm cannot install.
    repo.write(&FleetFiles::new().with(&settings("1.99.0")));
    let bad = repo.commit("bump to a version that does not exist");
    gh.answer(
        &format!("/repos/acme/fleet/commits/{bad}/pulls"),
        json!([{"number": 9, "labels": []}]),
    );
    gh.answer("/repos/acme/fleet/issues/9/comments", json!([]));
    agent
        .wait_for("dev rolled back", |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.revision == bad && r.phase == "halted")
        })
        .await;
    until("the comment on #9", || async {
        gh.seen().iter().any(|r| {
            r.method == "POST"
                && r.path_and_query.ends_with("/issues/9/comments")
                && r.body["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("rolled back wave `dev`") && b.contains(&bad))
        })
    })
    .await;
    agent.stop().await;
    f.shutdown().await;
}
