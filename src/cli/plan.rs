//! `psql-fleet plan`: the I/O around [`fleet_core::plan`]. Reads both revisions straight from
//! the Git object database (nothing is checked out), or the head and the live clusters,
//! prints the plan, and optionally keeps it as one comment on a GitHub pull request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use git2::Repository;

use crate::error_chain::{chain, with_cause};
use crate::github;
use fleet_core::fleetdir::{self, FileTree, LoadOutcome, LoadedFleet};
use fleet_core::plan::{self, markdown, Against, Labels, Plan, Snapshot};
use fleet_core::reconcile::live::LiveState;

/// Show what a change does to each cluster: creates, updates (field by field) and deletes,
/// and the rollout wave each cluster lands in.
///
/// Both revisions are read from the repository's objects, so the working tree is never
/// touched. Exit 1 when the head does not validate (every error is listed) or on failure.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The revision the change starts from (a commit, branch or tag; e.g. origin/main).
    #[arg(long, required_unless_present = "live")]
    pub base: Option<String>,
    /// The revision of the change.
    #[arg(long, default_value = "HEAD")]
    pub head: String,
    /// The Git repository.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The fleet directory inside the repository.
    #[arg(long, default_value = ".")]
    pub fleet_path: PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Markdown)]
    pub output: Format,
    /// Compare the head with what the clusters hold instead of with --base.
    #[arg(long, requires = "credentials_dir", conflicts_with = "base")]
    pub live: bool,
    /// Directory holding the kubeconfig files the Cluster documents name (with --live).
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
    /// Post the plan as a comment on this repository's pull request --pr (OWNER/NAME).
    #[arg(long, requires = "pr")]
    pub github_repo: Option<String>,
    /// The pull request to comment on; later runs edit the same comment.
    #[arg(long, requires = "github_repo")]
    pub pr: Option<u64>,
    /// GitHub's API root; https://HOST/api/v3 for GitHub Enterprise.
    #[arg(long, env = "GITHUB_API_URL", default_value = github::DEFAULT_API_URL)]
    pub github_api_url: String,
    /// File holding the GitHub token (else $GITHUB_TOKEN).
    #[arg(long)]
    pub github_token_file: Option<PathBuf>,
    /// Say whether the head commit is signed by one of these keys (the agent's
    /// `run --trusted-keys` file: allowed_signers lines and/or armoured OpenPGP keys).
    #[arg(long, value_name = "FILE")]
    pub trusted_keys: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Json,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot open the Git repository {}: {}", path.display(), source.message())]
    Open { path: PathBuf, source: git2::Error },
    #[error("revision {rev:?}: {}", source.message())]
    Revision { rev: String, source: git2::Error },
    #[error("revision {rev:?}: cannot read {}: {}", path.display(), source.message())]
    Tree {
        rev: String,
        path: PathBuf,
        source: git2::Error,
    },
    #[error(transparent)]
    GitHub(#[from] github::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("--base REV or --live is required")]
    NoBase,
    #[error(transparent)]
    Keys(#[from] crate::source::verify::KeysError),
}

pub fn run(args: &PlanArgs) -> ExitCode {
    match plan(args) {
        Ok(plan) => {
            if plan.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn plan(args: &PlanArgs) -> Result<Plan, Error> {
    let repo = Repository::open(&args.repo).map_err(|source| Error::Open {
        path: args.repo.clone(),
        source,
    })?;
    let keys = args
        .trusted_keys
        .as_deref()
        .map(crate::source::verify::TrustedKeys::from_file)
        .transpose()?;
    let (head_id, head) = load_revision(&repo, &args.head, &args.fleet_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let against = if args.live {
        Against::Live
    } else {
        Against::Revision
    };
    let (base_label, base) = match &args.base {
        Some(rev) if !args.live => {
            let (id, outcome) = load_revision(&repo, rev, &args.fleet_path)?;
            (label(rev, &id), Some(outcome))
        }
        _ => ("live".to_string(), None),
    };
    let labels = Labels {
        base: base_label,
        head: label(&args.head, &head_id),
    };
    let mut result = match &head.fleet {
        None => plan::invalid(&labels, against, &head.diagnostics),
        Some(fleet) => {
            let head_snapshot = Snapshot::of_fleet(fleet);
            let warnings = head.diagnostics.clone();
            match (&base, &args.credentials_dir) {
                (Some(base), _) => {
                    let base_snapshot = base
                        .fleet
                        .as_ref()
                        .map(Snapshot::of_fleet)
                        .unwrap_or_default();
                    let mut p =
                        plan::plan(&labels, against, &base_snapshot, &head_snapshot, warnings);
                    if base.fleet.is_none() {
                        let n = base.errors().count();
                        let s = if n == 1 { "" } else { "s" };
                        p.base_invalid = Some(format!("{n} error{s}"));
                    }
                    p
                }
                (None, Some(credentials)) => {
                    let live = runtime.block_on(read_live(fleet, credentials));
                    let live_snapshot = Snapshot::of_live(&head_snapshot, live);
                    plan::plan(&labels, against, &live_snapshot, &head_snapshot, warnings)
                }
                (None, None) => return Err(Error::NoBase),
            }
        }
    };
    if let Some(fleet) = &head.fleet {
        result.rollout = plan::rules::rules(&fleet.settings, &result);
    }
    if let Some(keys) = &keys {
        result.head_signature = Some(head_signature(&repo, &head_id, keys));
    }
    match args.output {
        Format::Markdown => print!("{}", markdown::render(&result)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        ),
    }
    if let (Some(repo), Some(pr)) = (&args.github_repo, args.pr) {
        let token = github::Token::from_env_or_file(args.github_token_file.as_deref())?;
        let client = github::Client::new(&args.github_api_url, repo, token)?;
        let body = markdown::render(&result);
        let done = runtime.block_on(client.upsert_comment(pr, markdown::MARKER, &body))?;
        match done {
            github::Upsert::Created(id) => {
                eprintln!("posted the plan on {repo}#{pr} (comment {id})")
            }
            github::Upsert::Updated(id) => {
                eprintln!("updated the plan on {repo}#{pr} (comment {id})")
            }
        }
    }
    Ok(result)
}

/// Whether the commit `id` is signed by one of `keys`.
fn head_signature(
    repo: &Repository,
    id: &str,
    keys: &crate::source::verify::TrustedKeys,
) -> plan::HeadSignature {
    let checked = git2::Oid::from_str(id)
        .map_err(|e| crate::source::verify::Why::Unreadable(e.message().into()))
        .and_then(|oid| crate::source::verify::check_commit(repo, oid, keys));
    match checked {
        Ok(signed) => plan::HeadSignature {
            trusted: true,
            detail: signed.to_string(),
            reason: None,
        },
        Err(why) => plan::HeadSignature {
            trusted: false,
            detail: why.to_string(),
            reason: Some(why.reason()),
        },
    }
}

/// The commit id and the loaded fleet of `rev`.
fn load_revision(
    repo: &Repository,
    rev: &str,
    subdir: &Path,
) -> Result<(String, LoadOutcome), Error> {
    let revision_error = |source| Error::Revision {
        rev: rev.to_string(),
        source,
    };
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(revision_error)?;
    let tree = match crate::source::git::read_tree_at(repo, commit.id(), Some(subdir)) {
        Ok(tree) => tree,
        // A revision from before the fleet directory existed holds an empty fleet.
        Err(e) if e.code() == git2::ErrorCode::NotFound => FileTree::default(),
        Err(source) => {
            return Err(Error::Tree {
                rev: rev.to_string(),
                path: subdir.to_path_buf(),
                source,
            })
        }
    };
    Ok((commit.id().to_string(), fleetdir::load(&tree)))
}

/// How a revision is shown: its short id, after the name it was given by when that is not
/// the id itself.
fn label(rev: &str, id: &str) -> String {
    let short = id.get(..12).unwrap_or(id);
    if id.starts_with(rev) || rev.starts_with(short) {
        short.to_string()
    } else {
        format!("{rev} ({short})")
    }
}

/// Every cluster's objects of this fleet, read at once; a cluster out of reach gives its
/// error (which never quotes its kubeconfig) instead.
async fn read_live(
    fleet: &LoadedFleet,
    credentials: &Path,
) -> BTreeMap<String, Result<LiveState, String>> {
    const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);
    let reads = fleet.clusters.values().map(|cluster| async move {
        let read = async {
            let client = crate::cluster::kubeconfig::client_in(credentials, cluster)
                .await
                .map_err(|e| chain(&e))?;
            crate::cluster::list::owned_objects(&client, &fleet.settings.name, &cluster.name)
                .await
                .map_err(|e| with_cause("cannot list its objects", &e))
        };
        let result = tokio::time::timeout(CLUSTER_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", CLUSTER_TIMEOUT.as_secs())));
        (cluster.name.clone(), result)
    });
    futures::future::join_all(reads).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::github::tests::{reply, FakeGitHub};
    use crate::source::git::tests::git;
    use fleet_core::plan::markdown::MARKER;

    const CLUSTER: &str = "apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\nspec: {kubeconfig: c1.yaml}\n";
    const CLAIM: &str =
        "apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nspec: {clusterName: c1}\n";

    fn args(repo: &Path, api: &str, token_file: &Path) -> PlanArgs {
        PlanArgs {
            base: Some("HEAD~1".into()),
            head: "HEAD".into(),
            repo: repo.to_path_buf(),
            fleet_path: ".".into(),
            output: Format::Json,
            live: false,
            credentials_dir: None,
            github_repo: Some("acme/fleet".into()),
            pr: Some(7),
            github_api_url: api.to_string(),
            github_token_file: Some(token_file.to_path_buf()),
            trusted_keys: None,
        }
    }

    #[test]
    fn the_plan_is_posted_once_then_the_same_comment_is_edited() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path();
        git(dir, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(dir.join("clusters")).unwrap();
        std::fs::write(dir.join("clusters/c1.yaml"), CLUSTER).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", "cluster"]);
        std::fs::create_dir_all(dir.join("claims")).unwrap();
        std::fs::write(dir.join("claims/a.yaml"), CLAIM).unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-q", "-m", "claim"]);
        let token = dir.join("token");
        std::fs::write(&token, "ghs_planner\n").unwrap();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        let gh = runtime.block_on(FakeGitHub::start(vec![
            reply(200, json!([{"id": 1, "body": "nice"}])),
            reply(201, json!({"id": 42})),
            reply(
                200,
                json!([{"id": 1, "body": "nice"}, {"id": 42, "body": format!("{MARKER}\nold")}]),
            ),
            reply(200, json!({"id": 42})),
        ]));
        for _ in 0..2 {
            let plan = plan(&args(dir, &gh.url, &token)).unwrap();
            assert_eq!(plan.summary.creates, 3);
        }
        let seen = gh.seen();
        let calls: Vec<_> = seen
            .iter()
            .map(|s| format!("{} {}", s.method, s.path_and_query))
            .collect();
        assert_eq!(
            calls,
            vec![
                "GET /api/v3/repos/acme/fleet/issues/7/comments?per_page=100&page=1",
                "POST /api/v3/repos/acme/fleet/issues/7/comments",
                "GET /api/v3/repos/acme/fleet/issues/7/comments?per_page=100&page=1",
                "PATCH /api/v3/repos/acme/fleet/issues/comments/42",
            ]
        );
        for posted in [&seen[1], &seen[3]] {
            let body = posted.body["body"].as_str().unwrap();
            assert!(body.starts_with(MARKER), "{body}");
            assert!(
                body.contains("**1 of 1 cluster change**: 3 creates"),
                "{body}"
            );
            assert_eq!(
                posted.headers["authorization"].to_str().unwrap(),
                "Bearer ghs_planner"
            );
        }
    }
}
