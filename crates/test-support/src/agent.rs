//! The agent under test, in-process ([`Agent`]: `agent::run` on this test's runtime) or as
//! the `psql-fleet run` binary in a child process ([`AgentProcess`]: for SIGTERM, SIGKILL
//! and its logs), and [`Endpoint`], how a test reads either one: status, metrics, and waits
//! on them. Both deref to their `Endpoint`, so `agent.wait_ready(..)` reads the same for
//! both. Start them with `SimFleet::start_agent` / `SimFleet::spawn_agent`.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use psql_fleet::agent::driver::WaveObserver;
use psql_fleet::agent::{self, Config};
use psql_fleet::source::git::GitRef;
use psql_fleet::source::SourceSpec;
use psql_fleet::status::StatusReport;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::status::{converged, metric};
use crate::wait::{self, CONVERGE};

/// What differs between agent runs; `Default` is a quick agent on the fleet directory.
#[derive(Clone, Default)]
pub struct AgentOptions {
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// Where the fleet comes from; the fleet directory when `None`.
    pub source: Option<SourceSpec>,
    /// Which Git reference to follow; the remote's default branch when `None`.
    pub reference: Option<GitRef>,
    /// How often it fetches and resyncs; 1 s when `None`.
    pub interval: Option<Duration>,
    /// How often it replays each cluster's pass, when not `interval` (`--resync-interval`):
    /// the tests count these passes as the agent's clock, where the agent's own default is
    /// ten minutes.
    pub resync: Option<Duration>,
    pub max_concurrency: Option<usize>,
    /// Told of every rollout wave transition (in-process only).
    pub observers: Vec<Arc<dyn WaveObserver>>,
    /// Where GitHub push webhooks are received, and their secret.
    pub webhook: Option<agent::WebhookConfig>,
    /// Wait for a source that cannot be read at start instead of ending with an error.
    pub wait_for_source: bool,
    /// Run the agent without a control token file: its rollout controls are off.
    pub no_control_token: bool,
    /// `--verify-commits` with these keys and mode.
    pub verify: Option<psql_fleet::source::verify::Policy>,
    /// `--prometheus-url` for the waves' metric gates (asked every 250 ms).
    pub prometheus_url: Option<String>,
    /// Approvals from this GitHub repository's pull requests (asked every 250 ms).
    pub github_approvals: Option<psql_fleet::github::Client>,
    /// `--cluster-api`: clusters found on this management cluster join the fleet.
    pub cluster_api: Option<psql_fleet::cluster_api::Settings>,
}

/// The control token every agent the harness starts takes (named [`CONTROL_TOKEN_NAME`]),
/// unless [`AgentOptions::no_control_token`].
pub const CONTROL_TOKEN: &str = "harness-control-token-0123456789";
pub const CONTROL_TOKEN_NAME: &str = "tests";

/// Writes the token file the harness's agents are given into `dir`; its path.
pub fn control_token_file(dir: &Path) -> PathBuf {
    let path = dir.join("control-token");
    std::fs::write(&path, format!("{CONTROL_TOKEN_NAME}:{CONTROL_TOKEN}\n")).unwrap();
    path
}

impl AgentOptions {
    /// An agent on the Git repository at `url`.
    pub fn git(url: impl Into<String>) -> AgentOptions {
        AgentOptions {
            source: Some(SourceSpec::Git(url.into())),
            ..AgentOptions::default()
        }
    }
}

/// Where an agent serves its status and metrics, and the ways the tests read them.
pub struct Endpoint {
    /// `http://127.0.0.1:<port>`.
    pub server: String,
    /// The control token it takes, if any.
    pub token: Option<String>,
}

impl Endpoint {
    /// `method path` with the JSON `body` and the agent's control token; the status code,
    /// status line and body.
    pub async fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String, String) {
        psql_fleet::cli::status::send(&self.server, method, path, body, self.token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path} to {}: {e}", self.server))
    }

    /// GET `path`; `None` while the agent does not answer 200.
    pub async fn get(&self, path: &str) -> Option<String> {
        psql_fleet::cli::status::get(&self.server, path).await.ok()
    }

    /// The status report, if the agent answers.
    pub async fn status(&self) -> Option<StatusReport> {
        let body = self.get("/api/v1/status").await?;
        Some(serde_json::from_str(&body).unwrap())
    }

    /// `/api/v1/status/summary`; fails the test when the agent does not answer.
    pub async fn summary(&self) -> psql_fleet::status::Summary {
        let body = self
            .get("/api/v1/status/summary")
            .await
            .unwrap_or_else(|| panic!("the agent at {} serves no summary", self.server));
        serde_json::from_str(&body).unwrap()
    }

    /// The status report; fails the test when the agent does not answer.
    pub async fn report(&self) -> StatusReport {
        self.status()
            .await
            .unwrap_or_else(|| panic!("the agent at {} serves no status", self.server))
    }

    /// The Prometheus exposition; fails the test when the agent does not answer.
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .unwrap_or_else(|| panic!("the agent at {} serves no metrics", self.server))
    }

    /// The value of series `name` with (at least) `labels`, if exposed.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric(&self.metrics().await, name, labels)
    }

    /// How many failures of kind `reason` (`conflict`, `forbidden`, `mass_prune`, …) the
    /// agent counted on `cluster`.
    pub async fn errors(&self, cluster: &str, reason: &str) -> f64 {
        self.metric(
            "psql_fleet_reconcile_errors_total",
            &[("cluster", cluster), ("reason", reason)],
        )
        .await
        .unwrap_or(0.0)
    }

    /// Asserts that the agent counted at least one failure of kind `reason` on `cluster`.
    pub async fn assert_error_counted(&self, cluster: &str, reason: &str) {
        let exposition = self.metrics().await;
        let counted = metric(
            &exposition,
            "psql_fleet_reconcile_errors_total",
            &[("cluster", cluster), ("reason", reason)],
        );
        assert!(
            counted.is_some_and(|v| v >= 1.0),
            "no {reason} error counted on {cluster}:\n{exposition}"
        );
    }

    /// `psql_fleet_cluster_reachable` of `cluster`: 1 reachable, 0 not, `None` unknown.
    pub async fn reachable_metric(&self, cluster: &str) -> Option<f64> {
        self.metric("psql_fleet_cluster_reachable", &[("cluster", cluster)])
            .await
    }

    /// How many reconcile passes of `cluster` the agent has finished (suspended clusters
    /// make none): the agent's own clock, to wait on instead of the wall's.
    pub async fn passes(&self, cluster: &str) -> f64 {
        self.metric(
            "psql_fleet_reconcile_duration_seconds_count",
            &[("cluster", cluster)],
        )
        .await
        .unwrap_or(0.0)
    }

    /// Waits until the agent has finished `n` more reconcile passes of `cluster`.
    pub async fn wait_passes(&self, cluster: &str, n: usize) {
        let target = self.passes(cluster).await + n as f64;
        wait::until(
            &format!("{n} more reconcile passes of {cluster}"),
            || async { self.passes(cluster).await >= target },
        )
        .await;
    }

    /// Asserts that `holds` stays true while the agent makes `n` more reconcile passes of
    /// `cluster` (checked at every poll): "nothing happens" measured on the agent's clock.
    pub async fn assert_holds_for_passes<F, Fut>(
        &self,
        what: &str,
        cluster: &str,
        n: usize,
        holds: F,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let target = self.passes(cluster).await + n as f64;
        wait::assert_holds_until(
            what,
            holds,
            &format!("{n} more reconcile passes of {cluster}"),
            || async { self.passes(cluster).await >= target },
        )
        .await;
    }

    /// Polls the status until `done` holds, failing the test after [`CONVERGE`] with `what`
    /// and the last status.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&StatusReport) -> bool) -> StatusReport {
        self.wait_for_within(what, CONVERGE, done).await
    }

    /// [`Endpoint::wait_for`] with a deadline of its own.
    pub async fn wait_for_within(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(report) = self.status().await {
                if done(&report) {
                    return report;
                }
                last = Some(report);
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last status:\n{}{}",
                    last.as_ref()
                        .map(StatusReport::to_table)
                        .unwrap_or_default(),
                    serde_json::to_string(&last).unwrap()
                );
            }
            tokio::time::sleep(wait::POLL).await;
        }
    }

    /// Waits until the newest revision is refused by the mass-prune guard as one removing
    /// `removed` of `total` claims, while `served` stays served; the refusal.
    pub async fn wait_mass_prune_refused(
        &self,
        served: &Option<String>,
        removed: usize,
        total: usize,
    ) -> String {
        let report = self
            .wait_for("the revision to be refused", |r| {
                r.source.rejected.is_some()
            })
            .await;
        let rejected = report.source.rejected.unwrap_or_default();
        assert!(rejected.contains("mass-prune"), "{rejected}");
        assert!(
            rejected.contains(&format!("would remove {removed} of {total} claims")),
            "{rejected}"
        );
        assert_eq!(&report.source.revision, served);
        rejected
    }

    /// Waits until each `(cluster, n)` shows exactly `n` claims, every one ready with its
    /// Usage and no drift.
    pub async fn wait_ready(&self, clusters: &[(&str, usize)]) -> StatusReport {
        self.wait_for("claims to be ready", |r| {
            clusters.iter().all(|(name, n)| {
                r.clusters.get(*name).is_some_and(|c| {
                    c.claims.len() == *n
                        && c.claims
                            .iter()
                            .all(|c| c.ready && c.usage_present && c.drift.is_empty())
                })
            })
        })
        .await
    }

    /// Waits until every cluster named has exactly `claims` claims, all ready with their
    /// Usage.
    pub async fn wait_converged(&self, clusters: &[String], claims: usize) -> StatusReport {
        self.wait_converged_within(clusters, claims, CONVERGE).await
    }

    /// [`Endpoint::wait_converged`] with a deadline of its own.
    pub async fn wait_converged_within(
        &self,
        clusters: &[String],
        claims: usize,
        timeout: Duration,
    ) -> StatusReport {
        self.wait_for_within(
            &format!("{clusters:?} converged with {claims} claim(s) each"),
            timeout,
            |r| converged(r, clusters, claims),
        )
        .await
    }

    /// Waits until the agent answers on its status endpoint; `gone` says why it never will.
    async fn wait_serving(&self, mut gone: impl FnMut() -> Option<String>) {
        let deadline = Instant::now() + CONVERGE;
        while self.status().await.is_none() {
            if let Some(why) = gone() {
                panic!("the agent ended before serving its status: {why}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CONVERGE:?} waiting for the agent to serve its status at {}",
                self.server
            );
            tokio::time::sleep(wait::POLL).await;
        }
    }
}

/// The agent running on this test's runtime.
pub struct Agent {
    endpoint: Endpoint,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), agent::Error>>,
}

impl Deref for Agent {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Agent {
    /// Starts `agent::run` with `config` on a loopback port of its own (`config.listen` is
    /// replaced), telling `observers` of the rollout, and waits until it serves its status.
    pub async fn start(mut config: Config, observers: Vec<Arc<dyn WaveObserver>>) -> Agent {
        let token = config.control.tokens.is_some();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let (server, task) = if observers.is_empty() {
            // Bound here, so the port is known without racing anyone for it.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let server = format!("http://{}", listener.local_addr().unwrap());
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            (
                server,
                tokio::spawn(agent::run_on(config, listener, shutdown)),
            )
        } else {
            // The observers' entry point binds `config.listen` itself.
            let port = crate::free_port();
            config.listen = format!("127.0.0.1:{port}").parse().unwrap();
            let task = tokio::spawn(agent::run_with_observers(config, observers, shutdown));
            (format!("http://127.0.0.1:{port}"), task)
        };
        let agent = Agent {
            endpoint: Endpoint {
                server,
                token: token.then(|| CONTROL_TOKEN.to_string()),
            },
            stop: Some(stop),
            task,
        };
        agent
            .wait_serving(|| agent.task.is_finished().then(|| "its task ended".into()))
            .await;
        agent
    }

    /// Stops it the way SIGTERM does, and waits for it to finish cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("the agent ended with an error: {e}"));
    }
}

/// How to run the binary; `Default` logs at `info` in text.
#[derive(Clone, Debug, Default)]
pub struct ProcessOptions {
    /// `--log-format` (`text` or `json`); the binary's default when `None`.
    pub log_format: Option<String>,
    /// `RUST_LOG`; `info` when `None`.
    pub rust_log: Option<String>,
    /// `--source`; the fleet directory when `None`.
    pub source: Option<String>,
    /// Further arguments of `psql-fleet run` (Git credentials, say).
    pub args: Vec<String>,
    /// A name for this agent when several run at once (leader election): its cache is
    /// `agent-cache-<name>` and its log `agent-<name>.log` in the simulator's folder,
    /// instead of the shared ones.
    pub name: Option<String>,
}

/// The arguments of `psql-fleet run --leader-elect` as `identity`, the Lease in `default`
/// on the cluster `kubeconfig` reaches, with `[lease duration, renew deadline, retry
/// period]`.
pub fn leader_elect_args(kubeconfig: &Path, identity: &str, timings: [&str; 3]) -> Vec<String> {
    let [lease, renew, retry] = timings;
    [
        "--leader-elect",
        "--leader-elect-kubeconfig",
        &kubeconfig.display().to_string(),
        "--leader-elect-namespace",
        "default",
        "--leader-elect-identity",
        identity,
        "--leader-elect-lease-duration",
        lease,
        "--leader-elect-renew-deadline",
        renew,
        "--leader-elect-retry-period",
        retry,
    ]
    .map(String::from)
    .to_vec()
}

/// `psql-fleet run` as a child process; killed (SIGKILL) if still running when dropped.
pub struct AgentProcess {
    endpoint: Endpoint,
    child: std::process::Child,
    log: PathBuf,
}

impl Deref for AgentProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl AgentProcess {
    /// Runs `psql-fleet run --source <fleet or options.source> --credentials-dir <credentials>
    /// --cache-dir <cache>`, resyncing every second, both its outputs appended to `log`, and
    /// waits until it serves its status.
    pub async fn spawn(
        fleet: &Path,
        credentials: &Path,
        cache: &Path,
        log: &Path,
        options: &ProcessOptions,
    ) -> AgentProcess {
        let port = crate::free_port();
        let append = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        let mut command = std::process::Command::new(crate::binary());
        command
            .arg("run")
            .arg("--source")
            .arg(
                options
                    .source
                    .as_deref()
                    .map_or(fleet.as_os_str(), OsStr::new),
            )
            .arg("--credentials-dir")
            .arg(credentials)
            .arg("--cache-dir")
            .arg(cache)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // The tests' clock: a pass replayed every second, as in-process agents do.
            .args(["--interval", "1s", "--resync-interval", "1s"])
            .args(["--max-concurrency", "4"])
            .arg("--control-token-file")
            .arg(control_token_file(credentials));
        if let Some(format) = &options.log_format {
            command.args(["--log-format", format]);
        }
        command.args(&options.args);
        let child = command
            .env("RUST_LOG", options.rust_log.as_deref().unwrap_or("info"))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(append())
            .stderr(append())
            .spawn()
            .unwrap();
        let mut agent = AgentProcess {
            endpoint: Endpoint {
                server: format!("http://127.0.0.1:{port}"),
                token: Some(CONTROL_TOKEN.to_string()),
            },
            child,
            log: log.to_path_buf(),
        };
        let log = agent.log.clone();
        let ended = |child: &mut std::process::Child| {
            child.try_wait().unwrap().map(|exit| {
                format!(
                    "{exit}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
        };
        let AgentProcess {
            endpoint, child, ..
        } = &mut agent;
        endpoint.wait_serving(|| ended(child)).await;
        agent
    }

    /// What it logged so far (every agent process of the fleet, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as a service manager stopping it does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIG<name>` (`STOP`, `CONT`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} {} failed", self.child.id());
    }

    /// Its exit status once it ends, or `None` if it still runs after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        // Not `wait::eventually`: still running is an answer here, not a failure.
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(wait::POLL).await;
        }
    }

    /// SIGTERM, and the exit status once it ends; fails the test if it has not ended
    /// within [`CONVERGE`].
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.terminate();
        let exit = self.wait(CONVERGE).await;
        exit.unwrap_or_else(|| {
            panic!(
                "the agent still runs {CONVERGE:?} after SIGTERM:\n{}",
                self.log()
            )
        })
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
