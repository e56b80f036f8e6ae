//! Rollout waves as GitHub commit statuses: one context per wave (`psql-fleet/<wave>`) on
//! the commit being rolled out, so the statuses of different waves never overwrite each
//! other. Transitions are sent in order by one task; a failed request is logged (the
//! client already retried it) and never stops the rollout.

use tokio::sync::mpsc;

use super::driver::WaveObserver;
use crate::github::{Client, StatusState};
use fleet_core::rollout::{Transition, WaveState};

/// The commit status context of a wave.
pub fn context(wave: &str) -> String {
    format!("psql-fleet/{wave}")
}

/// How a wave's state reads as a commit status.
pub fn status_state(state: WaveState) -> StatusState {
    match state {
        WaveState::Pending | WaveState::Progressing | WaveState::Baking => StatusState::Pending,
        WaveState::Complete => StatusState::Success,
        WaveState::Failed | WaveState::Halted => StatusState::Failure,
    }
}

pub struct CommitStatuses {
    tx: mpsc::UnboundedSender<Transition>,
}

impl CommitStatuses {
    /// Starts the task that posts the statuses; call within the agent's runtime.
    pub fn start(client: Client) -> CommitStatuses {
        let (tx, mut rx) = mpsc::unbounded_channel::<Transition>();
        tokio::spawn(async move {
            while let Some(t) = rx.recv().await {
                let description = format!("{}: {}", t.state.as_str(), t.description);
                let result = client
                    .set_commit_status(
                        &t.revision,
                        &context(&t.wave),
                        status_state(t.state),
                        &description,
                        None,
                    )
                    .await;
                if let Err(e) = result {
                    tracing::warn!(wave = %t.wave, error = %e, "cannot set the commit status");
                }
            }
        });
        CommitStatuses { tx }
    }
}

impl WaveObserver for CommitStatuses {
    fn transition(&self, transition: &Transition) {
        let _ = self.tx.send(transition.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::github::tests::{reply, FakeGitHub};
    use crate::github::Token;

    #[tokio::test]
    async fn each_wave_transition_becomes_a_status_of_its_own_context_in_order() {
        let gh = FakeGitHub::start((0..4).map(|_| reply(201, json!({"id": 1}))).collect()).await;
        let client = Client::new(&gh.url, "acme/fleet", Token::new("ghs_x")).unwrap();
        let statuses = CommitStatuses::start(client);
        let t = |wave: &str, state, description: &str| Transition {
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            wave: wave.into(),
            state,
            description: description.into(),
        };
        statuses.transition(&t("dev", WaveState::Progressing, "applying to dev-1"));
        statuses.transition(&t("dev", WaveState::Complete, "ready and baked for 1m"));
        statuses.transition(&t("staging", WaveState::Failed, "cluster staging-1: 500"));
        statuses.transition(&t("prod", WaveState::Halted, "wave staging failed"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gh.seen().len() < 4 {
            assert!(std::time::Instant::now() < deadline, "{:?}", gh.seen());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen: Vec<(String, serde_json::Value)> = gh
            .seen()
            .into_iter()
            .map(|s| (s.path_and_query, s.body))
            .collect();
        let path = "/api/v3/repos/acme/fleet/statuses/0123456789abcdef0123456789abcdef01234567";
        assert!(seen.iter().all(|(p, _)| p == path), "{seen:?}");
        let bodies: Vec<_> = seen.into_iter().map(|(_, b)| b).collect();
        assert_eq!(
            bodies,
            vec![
                json!({"state": "pending", "context": "psql-fleet/dev", "description": "progressing: applying to dev-1"}),
                json!({"state": "success", "context": "psql-fleet/dev", "description": "complete: ready and baked for 1m"}),
                json!({"state": "failure", "context": "psql-fleet/staging", "description": "failed: cluster staging-1: 500"}),
                json!({"state": "failure", "context": "psql-fleet/prod", "description": "halted: wave staging failed"}),
            ]
        );
    }

    /// The agent against the simulator with a Git source: every wave of every commit it
    /// rolls out ends as a success status of its own context, dev before prod.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_agent_sets_a_status_per_wave_on_each_commit_it_rolls_out() {
        use crate::agent::{run_with_observers, Config};
        use crate::source::git::tests::git;
        use crate::source::git::{Credentials, GitRef};
        use crate::source::SourceSpec;
        use kube_sim::{self as sim, SimConfig};
        use std::sync::Arc;

        let out = tempfile::tempdir().unwrap();
        let handle = sim::start(SimConfig {
            clusters: 2,
            out: out.path().to_path_buf(),
            ready_after: Duration::from_millis(100),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        git(w, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(w.join("clusters")).unwrap();
        std::fs::create_dir_all(w.join("claims")).unwrap();
        for (name, env) in handle.cluster_names.iter().zip(["dev", "prod"]) {
            let labels = vec![("env".to_string(), env.to_string())];
            std::fs::write(
                w.join(format!("clusters/{name}.yaml")),
                sim::kubeconfig::cluster_file(name, &labels),
            )
            .unwrap();
            std::fs::write(w.join(format!("claims/{name}.yaml")), format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {name}}}\n")).unwrap();
        }
        let fleet = |pin: &str| {
            format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nspec:\n  pins: {{stackgres-operator: {pin}}}\n  rollout:\n    waves:\n    - {{name: dev, selector: {{matchLabels: {{env: dev}}}}, bakeTime: 500ms}}\n    - {{name: prod, selector: {{matchLabels: {{env: prod}}}}}}\n")
        };
        std::fs::write(w.join("fleet.yaml"), fleet("1.18.4")).unwrap();
        git(w, &["add", "-A"]);
        git(w, &["commit", "-q", "-m", "first"]);
        let first = git(w, &["rev-parse", "HEAD"]);

        let gh = FakeGitHub::start((0..100).map(|_| reply(201, json!({"id": 1}))).collect()).await;
        let client = Client::new(&gh.url, "acme/fleet", Token::new("ghs_x")).unwrap();
        let observers: Vec<Arc<dyn WaveObserver>> = vec![Arc::new(CommitStatuses::start(client))];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = Config {
            source: SourceSpec::Git(format!("file://{}", w.display())),
            reference: GitRef::Branch("main".into()),
            credentials: Credentials::default(),
            cache_dir: out.path().join(".cache"),
            credentials_dir: out.path().to_path_buf(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            dry_run: false,
            allow_mass_prune: false,
            interval: Duration::from_millis(300),
            max_concurrency: 2,
            state_dir: None,
            webhook: None,
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(run_with_observers(config, observers, async move {
            let _ = stop_rx.await;
        }));
        // (sha, context, state) of every status seen.
        let statuses = || -> Vec<(String, String, String)> {
            gh.seen()
                .into_iter()
                .map(|s| {
                    let sha = s.path_and_query.rsplit('/').next().unwrap().to_string();
                    let field = |k: &str| s.body[k].as_str().unwrap().to_string();
                    (sha, field("context"), field("state"))
                })
                .collect()
        };
        let succeeded = |sha: &str| {
            let all = statuses();
            ["psql-fleet/dev", "psql-fleet/prod"].iter().all(|c| {
                all.iter()
                    .any(|(s, ctx, st)| s == sha && ctx == c && st == "success")
            })
        };
        let wait = |sha: String| async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !succeeded(&sha) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{sha}: {:?}",
                    statuses()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        wait(first.clone()).await;
        std::fs::write(w.join("fleet.yaml"), fleet("1.19.0")).unwrap();
        git(w, &["commit", "-q", "-am", "bump"]);
        let second = git(w, &["rev-parse", "HEAD"]);
        wait(second.clone()).await;
        // Prod's "progressing" status on the bump comes after dev's success.
        let of_second: Vec<(String, String)> = gh
            .seen()
            .into_iter()
            .filter(|s| s.path_and_query.ends_with(&second))
            .map(|s| {
                let field = |k: &str| s.body[k].as_str().unwrap().to_string();
                (field("context"), field("description"))
            })
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
        let _ = stop.send(());
        agent.await.unwrap().unwrap();
        handle.shutdown().await;
    }
}
