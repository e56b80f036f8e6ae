//! A simulated fleet with the agent in-process: `sim::start`, a fleet directory pointing at
//! its clusters, `agent::run`, and the readers the tests assert with (status, metrics, the
//! simulator's audit log, its admin API).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_sim::audit::AuditEntry;
use kube_sim::{self as sim, Sim, SimConfig, SimHandle};
use psql_fleet::agent::{self, Config};
use psql_fleet::cli::sim_fault::{self, FaultAction, FaultArgs};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;
use psql_fleet::status::StatusReport;
use serde_json::Value;

/// A running simulator and a fleet directory whose clusters are its clusters.
pub struct SimFleet {
    pub sim: SimHandle,
    pub sim_dir: tempfile::TempDir,
    pub fleet_dir: tempfile::TempDir,
}

impl SimFleet {
    /// `clusters` simulated clusters, each with a Cluster file and no claims yet.
    pub async fn start(clusters: usize, ready_after: Duration) -> SimFleet {
        Self::start_with(SimConfig {
            clusters,
            ready_after,
            ..SimConfig::default()
        })
        .await
    }

    /// As [`SimFleet::start`], with the simulator configured by the caller (`out` is set
    /// here).
    pub async fn start_with(config: SimConfig) -> SimFleet {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// As [`SimFleet::start_with`], the simulator keeping its state in
    /// `<sim dir>/state.json`, so that [`SimFleet::restart`] brings the same fleet back.
    pub async fn start_persistent(config: SimConfig) -> SimFleet {
        let sim_dir = tempfile::tempdir().unwrap();
        let state_file = Some(sim_dir.path().join("state.json"));
        Self::start_in(
            sim_dir,
            SimConfig {
                state_file,
                ..config
            },
        )
        .await
    }

    async fn start_in(sim_dir: tempfile::TempDir, config: SimConfig) -> SimFleet {
        let sim = sim::start(SimConfig {
            out: sim_dir.path().to_path_buf(),
            ..config
        })
        .await
        .unwrap();
        let fleet_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(fleet_dir.path().join("claims")).unwrap();
        std::fs::create_dir_all(fleet_dir.path().join("clusters")).unwrap();
        for name in &sim.cluster_names {
            std::fs::copy(
                sim_dir.path().join(format!("clusters/{name}.yaml")),
                fleet_dir.path().join(format!("clusters/{name}.yaml")),
            )
            .unwrap();
        }
        SimFleet {
            sim,
            sim_dir,
            fleet_dir,
        }
    }

    /// Shuts the simulator down, awaits `while_down`, and starts it again with the same
    /// configuration: from its state file, on the address saved there. Returns the stopped
    /// simulator too, whose audit log and counters tell what happened before the restart.
    pub async fn restart(self, while_down: impl Future<Output = ()>) -> (SimFleet, Arc<Sim>) {
        let SimFleet {
            sim,
            sim_dir,
            fleet_dir,
        } = self;
        let config = sim.sim.shared.config.clone();
        assert!(
            config.state_file.is_some(),
            "restart needs start_persistent"
        );
        let stopped = sim.sim.clone();
        sim.shutdown().await;
        while_down.await;
        let sim = sim::start(config).await.unwrap();
        let restarted = SimFleet {
            sim,
            sim_dir,
            fleet_dir,
        };
        (restarted, stopped)
    }

    pub fn names(&self) -> Vec<String> {
        self.sim.cluster_names.clone()
    }

    pub fn fleet(&self) -> &Path {
        self.fleet_dir.path()
    }

    /// Writes claim `app` (namespace `default`) for `cluster` into `claims/<cluster>.yaml`.
    pub fn add_claim(&self, cluster: &str) {
        write_atomic(
            &self.fleet().join(format!("claims/{cluster}.yaml")),
            &claim(cluster),
        );
    }

    pub fn remove_claim(&self, cluster: &str) {
        std::fs::remove_file(self.fleet().join(format!("claims/{cluster}.yaml"))).unwrap();
    }

    /// One claim on every cluster.
    pub fn claim_everywhere(&self) {
        for name in self.names() {
            self.add_claim(&name);
        }
    }

    /// The agent's configuration for this fleet.
    pub fn config(&self) -> Config {
        config(
            SourceSpec::Dir(self.fleet().to_path_buf()),
            self.sim_dir.path(),
            self.sim_dir.path().join("git-cache"),
        )
    }

    /// The simulator's audit log.
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.sim.sim.audit.entries(None)
    }

    /// Deletions the simulator accepted (2xx), the ones that took something away.
    pub fn deletions(&self) -> Vec<AuditEntry> {
        accepted_deletions(self.audit())
    }

    fn fault_args(&self) -> FaultArgs {
        FaultArgs {
            admin: self.sim.admin_url(),
            dir: self.sim_dir.path().to_path_buf(),
            action: FaultAction::Audit { cluster: None },
        }
    }

    /// One admin API call through `psql-fleet sim fault`'s client; panics unless 2xx.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let (code, text) = sim_fault::call(&self.fault_args(), method, path, &body)
            .await
            .unwrap();
        assert!(code < 300, "admin {method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A kube-rs client of one simulated cluster, from its kubeconfig as written now.
    pub async fn client(&self, cluster: &str) -> kube::Client {
        super::sim::client(&self.sim, cluster).await
    }

    /// Server-side applies by psql-fleet the simulator accepted, per cluster.
    pub fn applies(&self, cluster: &str) -> usize {
        self.audit()
            .iter()
            .filter(|e| {
                e.cluster == cluster
                    && e.verb == "apply"
                    && e.code < 300
                    && e.field_manager.as_deref() == Some("psql-fleet")
            })
            .count()
    }

    /// Replaces the cluster's injected faults (`{}` clears them).
    pub async fn faults(&self, cluster: &str, faults: Value) {
        self.admin("POST", &format!("/clusters/{cluster}/faults"), faults)
            .await;
    }
}

/// The deletions among `entries` that the simulator accepted (2xx).
pub fn accepted_deletions(entries: Vec<AuditEntry>) -> Vec<AuditEntry> {
    entries
        .into_iter()
        .filter(|e| e.verb.starts_with("delete") && e.code < 300)
        .collect()
}

/// The agent's configuration for `source`: quick resyncs, nothing dry.
pub fn config(source: SourceSpec, credentials_dir: &Path, cache_dir: PathBuf) -> Config {
    Config {
        source,
        reference: GitRef::Head,
        credentials: Credentials::default(),
        cache_dir,
        credentials_dir: credentials_dir.to_path_buf(),
        // Agent::start binds its own port; a caller of agent::run sets this.
        listen: "127.0.0.1:0".parse().unwrap(),
        dry_run: false,
        allow_mass_prune: false,
        interval: Duration::from_secs(1),
        max_concurrency: 4,
        state_dir: None,
        webhook: None,
    }
}

/// A claim named `app` in `default` for `cluster`.
pub fn claim(cluster: &str) -> String {
    format!("apiVersion: stacks.hops.ops.com.ai/v1alpha1\nkind: Psql\nmetadata: {{name: app}}\nspec: {{clusterName: {cluster}}}\n")
}

/// Writes through a rename, so the agent's directory watch never sees half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// The agent running in this process.
pub struct Agent {
    pub server: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), agent::Error>>,
}

impl Agent {
    /// Starts the agent on a loopback port of its own (`config.listen` is not used).
    pub fn start(config: Config) -> Agent {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = format!("http://{}", listener.local_addr().unwrap());
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(agent::run_on(config, listener, async move {
            let _ = stopped.await;
        }));
        Agent {
            server,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    pub async fn status(&self) -> Option<StatusReport> {
        status(&self.server).await
    }

    pub async fn metrics(&self) -> Option<String> {
        get(&self.server, "/metrics").await
    }
}

/// GET `path` from an agent at `server`; `None` while it does not answer 200.
pub async fn get(server: &str, path: &str) -> Option<String> {
    let (server, path) = (server.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || psql_fleet::cli::status::fetch(&server, &path).ok())
        .await
        .unwrap()
}

pub async fn status(server: &str) -> Option<StatusReport> {
    get(server, "/api/v1/status")
        .await
        .map(|body| serde_json::from_str(&body).unwrap())
}

/// Polls `check` every 100 ms until it gives a value; panics after `timeout` with `what`
/// and the last thing `describe` says.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether each named cluster has exactly `claims` claims, all ready with their Usage.
pub fn converged(report: &StatusReport, clusters: &[String], claims: usize) -> bool {
    clusters.iter().all(|name| {
        report.clusters.get(name).is_some_and(|c| {
            c.claims.len() == claims && c.claims.iter().all(|c| c.ready && c.usage_present)
        })
    })
}

/// Waits until the agent at `server` reports every named cluster converged with `claims`
/// claims.
pub async fn wait_converged(server: &str, clusters: &[String], claims: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let report = status(server).await;
        if report
            .as_ref()
            .is_some_and(|r| converged(r, clusters, claims))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {clusters:?} converged with {claims} claim(s) each; last status:\n{}",
            report.map(|r| format!("{}{}", r.to_table(), serde_json::to_string(&r.clusters).unwrap())).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one series in a Prometheus text exposition, matched by name and labels.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Accepted mutating requests per (cluster, verb, object name), to compare audit logs.
pub fn writes_by_object(entries: &[AuditEntry]) -> BTreeMap<(String, String, String), usize> {
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.code < 300) {
        *out.entry((
            e.cluster.clone(),
            e.verb.clone(),
            e.name.clone().unwrap_or_default(),
        ))
        .or_default() += 1;
    }
    out
}

/// Names of the Releases and Usages on a simulated cluster, read from its store.
pub fn live_objects(sim: &SimHandle, cluster: &str) -> Vec<String> {
    let s = &sim.sim;
    let Some(state) = s.slot(cluster).and_then(|slot| s.existing_state(slot)) else {
        return Vec::new();
    };
    let kinds = [
        s.shared.find("helm.m.crossplane.io", "v1beta1", "releases"),
        s.shared
            .find("protection.crossplane.io", "v1beta1", "usages"),
    ];
    let store = state.store();
    kinds
        .into_iter()
        .flatten()
        .flat_map(|res| {
            store
                .list(res, None, None)
                .map(|(k, _)| format!("{}/{}", k.namespace, k.name))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `psql-fleet run` as a child process (so that it can be killed with SIGKILL), killed
/// when dropped.
pub struct ChildAgent {
    pub server: String,
    child: std::process::Child,
}

impl ChildAgent {
    /// Starts the agent on a port of its choosing and waits until its log says which.
    pub async fn start(fleet: &SimFleet, log: &Path) -> ChildAgent {
        let child = std::process::Command::new(super::binary())
            .arg("run")
            .arg("--source")
            .arg(fleet.fleet())
            .arg("--credentials-dir")
            .arg(fleet.sim_dir.path())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--interval")
            .arg("1s")
            // Kept across a kill and restart, like the rollout state of a real agent.
            .arg("--cache-dir")
            .arg(fleet.sim_dir.path().join("agent-cache"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut agent = ChildAgent {
            server: String::new(),
            child,
        };
        agent.server = eventually(
            "the agent's listen address in its log",
            Duration::from_secs(30),
            || async {
                let text = std::fs::read_to_string(log).ok()?;
                let at = text.find("listen=")? + "listen=".len();
                let addr: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                addr.contains(':').then(|| format!("http://{addr}"))
            },
        )
        .await;
        agent
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildAgent {
    fn drop(&mut self) {
        self.kill();
    }
}
