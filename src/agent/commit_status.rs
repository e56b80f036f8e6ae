//! Rollout waves as GitHub commit statuses: one context per wave (`psql-fleet/<wave>`) on
//! the commit being rolled out, so the statuses of different waves never overwrite each
//! other. A rollback is also said in a comment on the pull request that brought the commit
//! (one per wave, kept up to date), since a status is easily missed once a pull request is
//! merged. Transitions are sent in order by one task; a failed request is logged (the
//! client already retried it) and never stops the rollout.

use tokio::sync::mpsc;

use super::driver::WaveObserver;
use crate::github::{Client, StatusState};
use crate::source::commit_of;
use fleet_core::rollout::rollback::is_rollback;
use fleet_core::rollout::{Transition, WaveState};

/// The comment about a rollback of `wave`, found again by this marker.
fn rollback_marker(wave: &str) -> String {
    format!("<!-- psql-fleet:rollback:{wave} -->")
}

/// Comments on every pull request that carries the commit rolled back.
async fn comment_rollback(client: &Client, t: &Transition) -> Result<(), crate::github::Error> {
    // The description may quote a cluster's error: one escaped line in a code block.
    let why = fleet_core::text::escape(&t.description).replace("```", "'''");
    let body = format!(
        "**psql-fleet rolled back wave `{}`** of commit {}:\n\n```\n{why}\n```\n\nThe rollout is halted; `psql-fleet rollout status` says where it stands, `psql-fleet rollout resume` tries the wave again.",
        t.wave.replace('`', "'"),
        commit_of(&t.revision),
    );
    for pull in client.pulls_of_commit(commit_of(&t.revision)).await? {
        client
            .upsert_comment(pull.number, &rollback_marker(&t.wave), &body)
            .await?;
    }
    Ok(())
}

/// The commit status context of a wave.
pub fn context(wave: &str) -> String {
    format!("psql-fleet/{wave}")
}

/// How a wave's state reads as a commit status.
pub fn status_state(state: WaveState) -> StatusState {
    match state {
        WaveState::Pending
        | WaveState::AwaitingApproval
        | WaveState::WaitingForWindow
        | WaveState::Progressing
        | WaveState::Baking => StatusState::Pending,
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
                        // A revision with Cluster API clusters still names its commit.
                        commit_of(&t.revision),
                        &context(&t.wave),
                        status_state(t.state),
                        &description,
                        None,
                    )
                    .await;
                if let Err(e) = result {
                    tracing::warn!(wave = %t.wave, error = %crate::error_chain::chain(&e), "cannot set the commit status");
                }
                if is_rollback(&t) {
                    if let Err(e) = comment_rollback(&client, &t).await {
                        tracing::warn!(wave = %t.wave, error = %crate::error_chain::chain(&e), "cannot say the rollback on the pull request");
                    }
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

    // The agent setting these statuses end to end is in tests/commit_status.rs.
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
}
