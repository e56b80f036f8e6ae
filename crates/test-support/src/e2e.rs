//! End-to-end setup: an in-process simulator, a fleet directory pointing at its clusters,
//! and the agent (`agent::run`) started and stopped in-process, with the ways the tests
//! look at the result: the agent's status and metrics, the simulator's audit log and a
//! kube-rs client per simulated cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube_sim::audit::AuditEntry;
use kube_sim::{self as sim, SimConfig, SimHandle};
use psql_fleet::agent::{self, Config};
use psql_fleet::cli::sim_fault::{self, FaultAction, FaultArgs};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;
use psql_fleet::status::StatusReport;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long "eventually" may take; generous, since six builds may share two cores.
pub const CONVERGE: Duration = Duration::from_secs(45);

/// A claim document: `name` in namespace `name` (two claims on a cluster need two
/// namespaces, since the Release names are fixed), with optional metadata annotations.
pub fn claim(name: &str, cluster: &str, annotations: &[(&str, &str)]) -> String {
    let mut meta = format!("  name: {name}\n  namespace: {name}\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (k, v) in annotations {
            meta.push_str(&format!("    {k}: {v:?}\n"));
        }
    }
    format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata:\n{meta}spec:\n  clusterName: {cluster}\n")
}

/// Where [`E2e::add_claim`] writes a claim.
pub fn claim_file(name: &str, cluster: &str) -> String {
    format!("claims/{cluster}/{name}.yaml")
}

/// A `Cluster` document for a simulated cluster, with extra `spec` lines (two-space indent).
pub fn cluster(name: &str, spec_extra: &str) -> String {
    format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec:\n  kubeconfig: {name}.yaml\n{spec_extra}")
}

/// A `Fleet` document named `e2e` with the given `spec` lines (two-space indent).
pub fn fleet_yaml(spec: &str) -> String {
    format!("apiVersion: fleet.hops.ops.com.ai/v1alpha1\nkind: Fleet\nmetadata: {{name: e2e}}\nspec:\n{spec}")
}

/// What differs between agent runs.
#[derive(Clone, Debug, Default)]
pub struct AgentOptions {
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// A Git URL instead of the fleet directory.
    pub git: Option<String>,
}

struct RunningAgent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), agent::Error>>,
}

/// A simulator, a fleet directory for its clusters, and (when started) the agent.
pub struct E2e {
    pub sim: SimHandle,
    pub names: Vec<String>,
    sim_dir: tempfile::TempDir,
    fleet_dir: tempfile::TempDir,
    server: String,
    port: u16,
    agent: Option<RunningAgent>,
}

impl E2e {
    /// `clusters` simulated clusters, each with a plain `Cluster` file in the fleet
    /// directory, and a `fleet.yaml` naming the fleet `e2e`.
    pub async fn start(clusters: usize, ready_after: Duration) -> E2e {
        let sim_dir = tempfile::tempdir().unwrap();
        let sim = sim::start(SimConfig {
            clusters,
            out: sim_dir.path().to_path_buf(),
            ready_after,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let fleet_dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let e2e = E2e {
            names: sim.cluster_names.clone(),
            sim,
            sim_dir,
            fleet_dir,
            server: format!("http://127.0.0.1:{port}"),
            port,
            agent: None,
        };
        for name in &e2e.names {
            e2e.write(&format!("clusters/{name}.yaml"), &cluster(name, ""));
        }
        e2e.write("fleet.yaml", &fleet_yaml("  drift: {policy: correct}\n"));
        e2e
    }

    pub fn fleet_dir(&self) -> &Path {
        self.fleet_dir.path()
    }

    /// Writes a fleet file whole (temporary file, then rename), so the agent never reads
    /// half of it.
    pub fn write(&self, rel: &str, text: &str) {
        write_atomic(&self.fleet_dir.path().join(rel), text);
    }

    /// Writes `claims/<cluster>/<name>.yaml` with [`claim`], creating its namespace on the cluster
    /// first if needed (the agent writes into a claim's namespace; it does not create it).
    pub async fn add_claim(&self, name: &str, cluster: &str, annotations: &[(&str, &str)]) {
        self.namespace(cluster, name).await;
        self.write(
            &claim_file(name, cluster),
            &claim(name, cluster, annotations),
        );
    }

    /// Creates namespace `name` on `cluster` unless it exists.
    pub async fn namespace(&self, cluster: &str, name: &str) {
        let namespaces: kube::Api<Namespace> = kube::Api::all(self.client(cluster).await);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&Default::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("cannot create namespace {name} on {cluster}: {e}"),
        }
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.fleet_dir.path().join(rel)).unwrap();
    }

    pub async fn start_agent(&mut self, options: AgentOptions) {
        assert!(self.agent.is_none(), "the agent is already running");
        let source = match &options.git {
            Some(url) => SourceSpec::Git(url.clone()),
            None => SourceSpec::Dir(self.fleet_dir.path().to_path_buf()),
        };
        let config = Config {
            source,
            reference: GitRef::Head,
            credentials: Credentials::default(),
            cache_dir: self.sim_dir.path().join("git-cache"),
            credentials_dir: self.sim_dir.path().to_path_buf(),
            listen: format!("127.0.0.1:{}", self.port).parse().unwrap(),
            dry_run: options.dry_run,
            allow_mass_prune: options.allow_mass_prune,
            interval: Duration::from_secs(1),
            max_concurrency: 4,
            state_dir: None,
            webhook: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent::run(config, async move {
            let _ = stopped.await;
        }));
        // The listener is bound before anything else happens; wait for it.
        let deadline = Instant::now() + CONVERGE;
        while self.status().await.is_none() {
            if task.is_finished() {
                panic!("the agent ended: {:?}", task.await);
            }
            assert!(
                Instant::now() < deadline,
                "the agent does not serve its status"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.agent = Some(RunningAgent { stop, task });
    }

    /// Starts the agent as the `psql-fleet run` binary in a child process, configured as
    /// [`E2e::start_agent`] configures it in-process (status, metrics and the waits work
    /// the same), and waits until it serves its status.
    pub async fn spawn_agent_process(&self) -> AgentProcess {
        assert!(self.agent.is_none(), "the agent is already running");
        let log = self.sim_dir.path().join("agent.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = std::process::Command::new(super::binary())
            .arg("run")
            .arg("--source")
            .arg(self.fleet_dir.path())
            .arg("--credentials-dir")
            .arg(self.sim_dir.path())
            .arg("--cache-dir")
            .arg(self.sim_dir.path().join("git-cache"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--interval", "1s", "--max-concurrency", "4"])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut agent = AgentProcess { child, log };
        let deadline = Instant::now() + CONVERGE;
        while self.status().await.is_none() {
            if let Ok(Some(exit)) = agent.child.try_wait() {
                panic!("the agent ended ({exit}):\n{}", agent.log());
            }
            assert!(
                Instant::now() < deadline,
                "the agent does not serve its status:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        agent
    }

    /// Stops the agent the way SIGTERM does, and waits for it to finish.
    pub async fn stop_agent(&mut self) {
        let agent = self.agent.take().expect("the agent is not running");
        let _ = agent.stop.send(());
        agent.task.await.unwrap().unwrap();
    }

    pub async fn shutdown(mut self) {
        if self.agent.is_some() {
            self.stop_agent().await;
        }
        self.sim.shutdown().await;
    }

    async fn get(&self, path: &'static str) -> Result<String, String> {
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            psql_fleet::cli::status::fetch(&server, path).map_err(|e| e.to_string())
        })
        .await
        .unwrap()
    }

    pub async fn status(&self) -> Option<StatusReport> {
        let body = self.get("/api/v1/status").await.ok()?;
        Some(serde_json::from_str(&body).unwrap())
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.unwrap()
    }

    /// The value of the series `name{labels}` (labels as exposed, sorted by name), if any.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Polls the status until `done` holds, failing the test after [`CONVERGE`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&StatusReport) -> bool) -> StatusReport {
        let deadline = Instant::now() + CONVERGE;
        let mut last = None;
        loop {
            if let Some(report) = self.status().await {
                if done(&report) {
                    return report;
                }
                last = Some(report);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {}",
                serde_json::to_string(&last).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `check` (anything async, such as a read through a cluster client) until it
    /// holds, failing the test after [`CONVERGE`].
    pub async fn eventually<F, Fut>(&self, what: &str, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + CONVERGE;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every claim of every cluster listed is ready with its Usage, as the
    /// agent reports it; `claims` is the number of claims each cluster must show.
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

    /// Every mutating request the simulator served for `cluster`, oldest first.
    pub fn audit(&self, cluster: &str) -> Vec<AuditEntry> {
        self.sim.sim.audit.entries(Some(cluster))
    }

    /// A request to the simulator's admin API, as `psql-fleet sim fault` makes it.
    pub async fn admin(&self, method: &str, path: &str, body: serde_json::Value) -> String {
        let args = FaultArgs {
            admin: self.sim.admin_url(),
            dir: self.sim.dir.clone(),
            action: FaultAction::Audit { cluster: None },
        };
        let (code, text) = sim_fault::call(&args, method, path, &body).await.unwrap();
        assert!(code < 300, "{method} {path}: {code} {text}");
        text
    }

    /// A kube-rs client for a simulated cluster, as anyone holding its kubeconfig.
    pub async fn client(&self, cluster: &str) -> kube::Client {
        super::sim::client(&self.sim, cluster).await
    }
}

/// `psql-fleet run` as a child process; killed (SIGKILL) if still running when dropped.
pub struct AgentProcess {
    pub child: std::process::Child,
    log: PathBuf,
}

impl AgentProcess {
    /// What it logged so far (every agent process of the test, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, as a service manager stopping it does.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Its exit status once it ends, or `None` if it still runs after `deadline`.
    pub async fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_atomic(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A dot file, which the fleet loader skips.
    let file = path.file_name().unwrap().to_string_lossy();
    let tmp: PathBuf = path.with_file_name(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub const RELEASES: &str = "releases.helm.m.crossplane.io";
pub const USAGES: &str = "usages.protection.crossplane.io";
pub const EVENTS: &str = "events.events.k8s.io";

/// Audit entries that write Releases or Usages (what psql-fleet owns), leaving out
/// Events and the tests' own namespaces.
pub fn object_writes(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    entries
        .iter()
        .filter(|e| e.resource == RELEASES || e.resource == USAGES)
        .collect()
}

/// `verb resource namespace/name` for each entry: what the order assertions compare.
pub fn describe(entries: &[&AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e.verb,
                e.resource,
                e.namespace.as_deref().unwrap_or(""),
                e.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}
