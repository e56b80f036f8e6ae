//! Wave approvals from GitHub (`run --github-repo`): a wave that waits for approval is
//! approved by the pull request that brought its commit, with the label
//! `psql-fleet/approve-<wave>`, or with a review that approves and says `/approve <wave>`
//! on a line of its own, by someone the repository trusts (owner, member or collaborator).
//! A plain approving review is not enough: it usually came before the merge, for the change
//! as a whole, not for the wave a person now looks at.
//!
//! The agent asks GitHub only while a wave waits for approval, once per interval; the
//! decision is [`approval`], a pure function of what GitHub answered.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::driver::RolloutDriver;
use crate::github::{Client, Pull, Review};

/// The label that approves `wave` on the pull request of the commit.
pub fn label(wave: &str) -> String {
    format!("psql-fleet/approve-{wave}")
}

/// Standings in the repository whose reviews count.
const TRUSTED: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// Who approves `wave`, if anyone: the first pull request labelled for it, else the first
/// approving review from a trusted reviewer that names it.
pub fn approval(wave: &str, pulls: &[(Pull, Vec<Review>)]) -> Option<String> {
    let wanted = label(wave);
    let command = format!("/approve {wave}");
    for (pull, _) in pulls {
        if pull.labels.iter().any(|l| l.name == wanted) {
            return Some(format!("github label {wanted} on #{}", pull.number));
        }
    }
    for (pull, reviews) in pulls {
        for r in reviews {
            let says = r
                .body
                .as_deref()
                .is_some_and(|b| b.lines().any(|l| l.trim() == command));
            let trusted = TRUSTED.contains(&r.author_association.as_str());
            if r.state == "APPROVED" && trusted && says {
                let who = r.user.as_ref().map_or("?", |u| u.login.as_str());
                return Some(format!("github:{who} (review on #{})", pull.number));
            }
        }
    }
    None
}

/// Asks GitHub every `interval` while a wave waits for approval, and approves it when the
/// pull request says so.
pub fn spawn(client: Client, rollouts: Arc<RolloutDriver>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some((revision, wave)) = rollouts.awaiting_approval() else {
                continue;
            };
            match ask(&client, crate::source::commit_of(&revision)).await {
                Ok(pulls) => {
                    if let Some(who) = approval(&wave, &pulls) {
                        match rollouts.approve(&wave, &who) {
                            Ok(_) => {
                                tracing::warn!(%wave, who = %who, "rollout control: approved on GitHub")
                            }
                            Err(e) => {
                                tracing::warn!(%wave, error = %e, "approval on GitHub not taken")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%wave, error = %crate::error_chain::chain(&e), "cannot read the pull request's approvals on GitHub");
                }
            }
        }
    })
}

async fn ask(client: &Client, sha: &str) -> Result<Vec<(Pull, Vec<Review>)>, crate::github::Error> {
    let mut out = Vec::new();
    for pull in client.pulls_of_commit(sha).await? {
        let reviews = client.reviews(pull.number).await?;
        out.push((pull, reviews));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::{Label, User};

    fn pull(number: u64, labels: &[&str]) -> Pull {
        Pull {
            number,
            labels: labels
                .iter()
                .map(|l| Label {
                    name: l.to_string(),
                })
                .collect(),
        }
    }

    fn review(login: &str, state: &str, association: &str, body: &str) -> Review {
        Review {
            user: Some(User {
                login: login.into(),
            }),
            state: state.into(),
            author_association: association.into(),
            body: Some(body.into()),
        }
    }

    #[test]
    fn the_wave_label_approves_that_wave_only() {
        let pulls = vec![(pull(7, &["psql-fleet/approve-prod"]), vec![])];
        assert_eq!(
            approval("prod", &pulls).as_deref(),
            Some("github label psql-fleet/approve-prod on #7")
        );
        assert_eq!(approval("staging", &pulls), None);
    }

    #[test]
    fn a_trusted_approving_review_that_names_the_wave_approves_it() {
        let ok = review(
            "alice",
            "APPROVED",
            "MEMBER",
            "Looks fine in staging.\n/approve prod\n",
        );
        let pulls = vec![(pull(7, &[]), vec![ok])];
        assert_eq!(
            approval("prod", &pulls).as_deref(),
            Some("github:alice (review on #7)")
        );
    }

    #[test]
    fn a_plain_approval_a_stranger_or_a_comment_does_not() {
        let cases = [
            review("alice", "APPROVED", "MEMBER", "LGTM"),
            review("mallory", "APPROVED", "NONE", "/approve prod"),
            review("bob", "COMMENTED", "COLLABORATOR", "/approve prod"),
            review("carol", "APPROVED", "OWNER", "/approve production"),
        ];
        for r in cases {
            let pulls = vec![(pull(7, &["psql-fleet/approve-staging"]), vec![r.clone()])];
            assert_eq!(approval("prod", &pulls), None, "{r:?}");
        }
    }
}
