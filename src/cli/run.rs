//! `psql-fleet run`: starts the agent (see [`crate::agent`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::agent::commit_status::CommitStatuses;
use crate::agent::driver::WaveObserver;
use crate::agent::{self, Config};
use crate::source::git::{Credentials, GitRef, SshAuth};
use crate::source::{verify, SourceSpec};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Run the agent: watch the fleet source and keep every cluster reconciled.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Fleet directory, or a Git URL (https://, http://, git://, file://, ssh:// or
    /// user@host:path).
    #[arg(long)]
    pub source: String,
    /// Directory holding the kubeconfig files the Cluster documents name.
    #[arg(long)]
    pub credentials_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Compute and report everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Let a revision remove more than the allowed share of the fleet's claims.
    #[arg(long)]
    pub allow_mass_prune: bool,
    /// When the source cannot be read at start, wait for it (the status says why)
    /// instead of exiting with an error. Once a revision has been read, an unreadable
    /// source never stops the agent: it keeps serving the last good revision.
    #[arg(long)]
    pub wait_for_source: bool,
    /// Git fetch interval, how often a fleet directory is read again without an event, and
    /// how often a cluster is asked again for the APIs it lacked (e.g. 30s, 2m).
    /// Kubeconfigs are re-checked when the credentials directory changes (every interval
    /// where it cannot be watched).
    #[arg(long, default_value = "30s", value_parser = fleet_core::model::duration::parse)]
    pub interval: Duration,
    /// How often each cluster's pass is replayed from what its watches hold, with no
    /// request when nothing changed. The watches carry every change: an edit, a deletion,
    /// a new revision, a resumed rollout and a watch back after an error are reconciled at
    /// once whatever this is. The replay is the safety net under them (controller-runtime
    /// replays every 10h, Argo CD every 3m), and it costs CPU at every cluster while idle.
    #[arg(long, default_value = "10m", value_parser = fleet_core::model::duration::parse)]
    pub resync_interval: Duration,
    #[arg(long, conflicts_with_all = ["tag", "commit"])]
    pub branch: Option<String>,
    #[arg(long, conflicts_with = "commit")]
    pub tag: Option<String>,
    #[arg(long)]
    pub commit: Option<String>,
    /// Prometheus's base URL (e.g. http://prometheus:9090): the waves' metric gates
    /// (`gates` in fleet.yaml) are its instant queries. Without it a gated wave cannot pass
    /// its gates.
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// How often a baking wave's gates are asked (e.g. 15s, 1m).
    #[arg(long, default_value = "30s", value_parser = fleet_core::model::duration::parse)]
    pub prometheus_interval: Duration,
    /// Clusters written to at once.
    #[arg(long, default_value_t = 8)]
    pub max_concurrency: usize,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where Git sources are cloned and, unless --state-dir, the rollout state is kept
    /// [default: $XDG_CACHE_HOME/psql-fleet, else ~/.cache/psql-fleet].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Where the rollout state is kept: which revision each cluster was given and where
    /// each wave stands, so a restart skips no gate (default `<cache-dir>/state`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// File holding an HTTPS token for the Git source (else $PSQL_FLEET_GIT_TOKEN).
    #[arg(long)]
    pub git_token_file: Option<PathBuf>,
    /// PEM bundle of CAs trusted, besides the system roots, for the Git remote's TLS.
    #[arg(long, value_name = "PATH")]
    pub git_ca_file: Option<PathBuf>,
    /// Private key (a read-only deploy key) for an SSH Git source.
    #[arg(long, value_name = "PATH", requires = "git_known_hosts")]
    pub git_ssh_key: Option<PathBuf>,
    /// File holding the passphrase of --git-ssh-key, when it has one.
    #[arg(long, value_name = "PATH", requires = "git_ssh_key")]
    pub git_ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts file (OpenSSH format, plain or hashed) holding the SSH Git host's keys:
    /// a host whose key is not in it is refused; there is no trust on first use.
    #[arg(long, value_name = "PATH", requires = "git_ssh_key")]
    pub git_known_hosts: Option<PathBuf>,
    /// Set a GitHub commit status per rollout wave (`psql-fleet/<wave>`) on the commit
    /// being rolled out (needs a Git source; token in $GITHUB_TOKEN or --github-token-file).
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,
    /// GitHub API base URL (`https://HOST/api/v3` for GitHub Enterprise).
    #[arg(long, env = "GITHUB_API_URL", default_value = crate::github::DEFAULT_API_URL)]
    pub github_api_url: String,
    /// File holding the GitHub token (else $GITHUB_TOKEN).
    #[arg(long, requires = "github_repo")]
    pub github_token_file: Option<PathBuf>,
    /// Receive GitHub push webhooks (POST /webhook) here, so a push is fetched at once.
    #[arg(long, requires = "webhook_secret_file")]
    pub webhook_listen: Option<SocketAddr>,
    /// File holding the webhook's shared secret (the HMAC key of X-Hub-Signature-256).
    #[arg(long, requires = "webhook_listen")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File of bearer tokens for the rollout controls (POST /api/v1/rollout/halt|resume|approve):
    /// `name:token` lines (the name is logged with every action), or one token alone,
    /// named `default`. Without it the controls are off.
    #[arg(long, value_name = "PATH")]
    pub control_token_file: Option<PathBuf>,
    /// Ask for a control token on GET /api/v1/status and /api/v1/rollout too (the probes
    /// and /metrics stay open).
    #[arg(long, requires = "control_token_file")]
    pub status_requires_token: bool,
    /// Serve only Git revisions signed by a key in --trusted-keys; any other is refused
    /// like a revision that does not validate (the last good one stays served).
    #[arg(long, requires = "trusted_keys")]
    pub verify_commits: bool,
    /// The keys a revision may be signed with: SSH keys in git's allowed_signers format
    /// and/or ASCII-armoured OpenPGP public keys, in one file.
    #[arg(long, value_name = "FILE", requires = "verify_commits")]
    pub trusted_keys: Option<PathBuf>,
    /// What --verify-commits checks: the commit served (`head`), the annotated tag
    /// followed (`tag`, needs --tag), or both. Default: `tag` with --tag, else `head`.
    #[arg(long, value_enum, requires = "verify_commits")]
    pub verify_mode: Option<crate::source::verify::Mode>,
    /// Run as one of several replicas: write to fleet clusters only while holding a
    /// coordination.k8s.io/v1 Lease on the management cluster (client-go's leader
    /// election); a standby serves its probes, metrics and status, and writes nothing.
    #[arg(long)]
    pub leader_elect: bool,
    /// Kubeconfig of the management cluster holding the Lease [default: the in-cluster
    /// configuration of the pod's service account].
    #[arg(
        long,
        value_name = "PATH",
        requires = "leader_elect",
        visible_alias = "management-kubeconfig"
    )]
    pub leader_elect_kubeconfig: Option<PathBuf>,
    /// Namespace of the Lease [default: the pod's namespace, else `default`].
    #[arg(
        long,
        value_name = "NAMESPACE",
        requires = "leader_elect",
        visible_alias = "namespace"
    )]
    pub leader_elect_namespace: Option<String>,
    /// Name of the Lease; replicas of one fleet share it, and two fleets in one namespace
    /// need two names.
    #[arg(long, value_name = "NAME", default_value = agent::leader::DEFAULT_LEASE_NAME, requires = "leader_elect")]
    pub leader_elect_lease_name: String,
    /// This replica's holderIdentity [default: <hostname>_<pid>].
    #[allow(
        rustdoc::broken_intra_doc_links,
        rustdoc::invalid_html_tags,
        reason = "clap's help text as printed, not Markdown"
    )]
    #[arg(long, value_name = "ID", requires = "leader_elect")]
    pub leader_elect_identity: Option<String>,
    /// How long a Lease holds without renewal before another replica may take it.
    #[arg(long, default_value = "15s", value_parser = fleet_core::model::duration::parse, requires = "leader_elect")]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps writing without a successful renewal; shorter than the
    /// lease duration, so it stops before anyone else can take the Lease.
    #[arg(long, default_value = "10s", value_parser = fleet_core::model::duration::parse, requires = "leader_elect")]
    pub leader_elect_renew_deadline: Duration,
    /// How often the leader renews, and a standby tries to take the Lease.
    #[arg(long, default_value = "2s", value_parser = fleet_core::model::duration::parse, requires = "leader_elect")]
    pub leader_elect_retry_period: Duration,
    /// Also take the fleet's clusters from a Cluster API management cluster: every
    /// `Cluster` (cluster.x-k8s.io/v1beta1) whose control plane is initialised, with its
    /// labels, reached through the kubeconfig Secret `<name>-kubeconfig` (key `value`)
    /// Cluster API writes beside it. Claims select them by label like cluster files.
    #[arg(long)]
    pub cluster_api: bool,
    /// Kubeconfig of the Cluster API management cluster [default: the in-cluster
    /// configuration of the pod's service account].
    #[arg(long, value_name = "PATH", requires = "cluster_api")]
    pub cluster_api_kubeconfig: Option<PathBuf>,
    /// Namespace to find Clusters in [default: every namespace]. Repeatable.
    #[arg(long, value_name = "NAMESPACE", requires = "cluster_api")]
    pub cluster_api_namespace: Vec<String>,
    /// Split the fleet's clusters into this many shards, each written by the replica
    /// holding its Lease (`<lease>-shard-<i>`); the replicas share the shards evenly, and
    /// the leader alone decides the rollout. 1: the leader writes to every cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024), requires = "leader_elect")]
    pub shards: u32,
}

/// `--leader-elect` and its flags, checked.
fn leader_election(args: &RunArgs) -> Result<Option<agent::leader::Settings>, String> {
    if !args.leader_elect {
        return Ok(None);
    }
    let settings = agent::leader::Settings {
        kubeconfig: args.leader_elect_kubeconfig.clone(),
        namespace: args
            .leader_elect_namespace
            .clone()
            .unwrap_or_else(agent::leader::default_namespace),
        lease_name: args.leader_elect_lease_name.clone(),
        identity: args
            .leader_elect_identity
            .clone()
            .unwrap_or_else(agent::leader::default_identity),
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    settings.check().map_err(|e| e.to_string())?;
    Ok(Some(settings))
}

fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// Logs to stderr, filtered by `RUST_LOG`, else at `default_level`.
pub(crate) fn init_logging_at(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        // One event, one line: field values and messages escaped (see log_fields).
        LogFormat::Text => builder
            .fmt_fields(super::log_fields::EscapedFields)
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The HTTPS token, and the SSH key and known_hosts when given (checked here, so that a
/// wrong path ends the agent at start).
fn git_credentials(args: &RunArgs) -> Result<Credentials, crate::source::git::Error> {
    let credentials = Credentials::load(args.git_token_file.as_deref())?;
    match (&args.git_ssh_key, &args.git_known_hosts) {
        (Some(key), Some(known_hosts)) => Ok(credentials.with_ssh(SshAuth::load(
            key,
            args.git_ssh_key_passphrase_file.as_deref(),
            known_hosts,
        )?)),
        _ => Ok(credentials),
    }
}

/// `--verify-commits` as the flags say, or why they do not fit together.
fn verify_policy(args: &RunArgs) -> Result<Option<verify::Policy>, String> {
    let Some(file) = args.trusted_keys.as_deref().filter(|_| args.verify_commits) else {
        return Ok(None);
    };
    if !matches!(SourceSpec::parse(&args.source), SourceSpec::Git(_)) {
        return Err("--verify-commits needs a Git --source: a directory has no signatures".into());
    }
    let mode = args.verify_mode.unwrap_or(if args.tag.is_some() {
        verify::Mode::Tag
    } else {
        verify::Mode::Head
    });
    if mode != verify::Mode::Head && args.tag.is_none() {
        return Err("--verify-mode tag and tag-and-head need --tag".into());
    }
    let keys = verify::TrustedKeys::from_file(file).map_err(|e| e.to_string())?;
    tracing::info!(
        ?keys,
        ?mode,
        "serving only revisions signed by a trusted key"
    );
    Ok(Some(verify::Policy { keys, mode }))
}

pub fn run(args: &RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let cache_dir =
        match super::cache_dir::resolve(args.cache_dir.as_deref(), |name| std::env::var_os(name)) {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    tracing::info!(
        cache_dir = %cache_dir.path.display(),
        from = cache_dir.from,
        "cache directory (Git clones; the rollout state unless --state-dir)"
    );
    let credentials = match git_credentials(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let SourceSpec::Git(url) = SourceSpec::parse(&args.source) {
        crate::source::git::init();
        if let Err(e) = crate::source::git::check_transport(&url, &credentials) {
            eprintln!("error: {}", crate::error_chain::chain(&e));
            return ExitCode::FAILURE;
        }
    }
    if let Some(ca_file) = &args.git_ca_file {
        // SAFETY: this runs before the runtime and its threads exist, so nothing else is
        // using libgit2 yet; every later fetch sees the setting.
        #[allow(unsafe_code, reason = "see trust_ca_file's safety section")]
        let trusted = unsafe { crate::source::git::trust_ca_file(ca_file) };
        if let Err(e) = trusted {
            eprintln!("error: {}", crate::error_chain::chain(&e));
            return ExitCode::FAILURE;
        }
    }
    let reference = match (&args.branch, &args.tag, &args.commit) {
        (Some(b), _, _) => GitRef::Branch(b.clone()),
        (_, Some(t), _) => GitRef::Tag(t.clone()),
        (_, _, Some(c)) => GitRef::Commit(c.clone()),
        _ => GitRef::Head,
    };
    let webhook = match (&args.webhook_listen, &args.webhook_secret_file) {
        (Some(listen), Some(file)) => match crate::webhook::Secret::from_file(file) {
            Ok(secret) => Some(agent::WebhookConfig {
                listen: *listen,
                secret,
            }),
            Err(e) => {
                eprintln!("error: {}", crate::error_chain::chain(&e));
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let verify = match verify_policy(args) {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let leader_election = match leader_election(args) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let control = match &args.control_token_file {
        None => agent::control::Control::default(),
        Some(file) => match agent::control::Tokens::from_file(file) {
            Ok(tokens) => agent::control::Control {
                tokens: Some(tokens),
                status_requires_token: args.status_requires_token,
            },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let github = match &args.github_repo {
        None => None,
        Some(_) if !matches!(SourceSpec::parse(&args.source), SourceSpec::Git(_)) => {
            eprintln!("error: --github-repo needs a Git --source: statuses are set on the commit being rolled out");
            return ExitCode::FAILURE;
        }
        Some(repo) => {
            let client = crate::github::Token::from_env_or_file(args.github_token_file.as_deref())
                .and_then(|token| crate::github::Client::new(&args.github_api_url, repo, token));
            match client {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("error: {}", crate::error_chain::chain(&e));
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let github_approvals = github.clone().map(|client| (client, args.interval));
    let config = Config {
        source: SourceSpec::parse(&args.source),
        reference,
        credentials,
        cache_dir: cache_dir.path,
        credentials_dir: args.credentials_dir.clone(),
        listen: args.listen,
        dry_run: args.dry_run,
        allow_mass_prune: args.allow_mass_prune,
        interval: args.interval,
        resync: args.resync_interval,
        max_concurrency: args.max_concurrency,
        state_dir: args.state_dir.clone(),
        webhook,
        wait_for_source: args.wait_for_source,
        control,
        verify,
        leader_election,
        shards: args.shards,
        gates: crate::agent::gates::Settings {
            prometheus_url: args.prometheus_url.clone(),
            interval: args.prometheus_interval,
        },
        github_approvals,
        cluster_api: args.cluster_api.then(|| crate::cluster_api::Settings {
            kubeconfig: args.cluster_api_kubeconfig.clone(),
            namespaces: args.cluster_api_namespace.clone(),
        }),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = async move {
        let mut observers: Vec<Arc<dyn WaveObserver>> = Vec::new();
        if let Some(client) = github {
            observers.push(Arc::new(CommitStatuses::start(client)));
        }
        agent::run_with_observers(config, observers, shutdown_signal()).await
    };
    match runtime.block_on(running) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain::chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(extra: &[&str]) -> RunArgs {
        let base = [
            "psql-fleet",
            "run",
            "--source",
            "fleet",
            "--credentials-dir",
            "creds",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra)).unwrap();
        match cli.command {
            Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn passes_are_replayed_every_ten_minutes_whatever_the_source_interval() {
        let default = run_args(&[]);
        assert_eq!(default.resync_interval, Duration::from_secs(600));
        assert_eq!(default.interval, Duration::from_secs(30));
        assert_eq!(
            run_args(&["--interval", "2m"]).resync_interval,
            Duration::from_secs(600)
        );
        let both = run_args(&["--interval", "1m", "--resync-interval", "45s"]);
        assert_eq!(both.interval, Duration::from_secs(60));
        assert_eq!(both.resync_interval, Duration::from_secs(45));
    }
}
