//! [`SimFleet`]: the world most tests start from. An in-process simulator of N clusters
//! and a fleet directory with a `Cluster` document for each (no `fleet.yaml`, so the fleet
//! is named `default`, and no claims yet); documents from `fleet_core::testing` are put in
//! it whole, and the agent is started on it in-process or as a child process. Its readers
//! are the simulator's: audit log, stores, admin API, a kube-rs client per cluster.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleet_core::testing::{claim, cluster, Claim, Document, FleetFiles};
use kube_sim::audit::AuditEntry;
use kube_sim::{self as sim, Sim, SimConfig, SimHandle};
use psql_fleet::agent::control::{Control, Tokens};
use psql_fleet::agent::Config;
use psql_fleet::cli::sim_fault::{self, FaultAction, FaultArgs};
use psql_fleet::source::git::{Credentials, GitRef};
use psql_fleet::source::SourceSpec;
use serde_json::Value;

use crate::agent::{Agent, AgentOptions, AgentProcess, ProcessOptions};
use crate::audit::{accepted_deletions, live_objects};
use crate::files::{write_atomic, write_doc, write_files};

/// A running simulator and a fleet directory whose clusters are its clusters.
pub struct SimFleet {
    pub sim: SimHandle,
    /// The simulated clusters' names, `sim-000` on.
    pub names: Vec<String>,
    sim_dir: tempfile::TempDir,
    fleet_dir: tempfile::TempDir,
}

impl SimFleet {
    /// `clusters` simulated clusters whose Releases become ready `ready_after` they are
    /// applied.
    pub async fn start(clusters: usize, ready_after: Duration) -> SimFleet {
        SimFleet::start_with(SimConfig {
            clusters,
            ready_after,
            ..SimConfig::default()
        })
        .await
    }

    /// As [`SimFleet::start`], the simulator configured by the caller (`out` is set here).
    pub async fn start_with(config: SimConfig) -> SimFleet {
        SimFleet::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// As [`SimFleet::start_with`], the simulator keeping its state in
    /// `<sim dir>/state.json`, so that [`SimFleet::restart`] brings the same fleet back.
    pub async fn start_persistent(config: SimConfig) -> SimFleet {
        let sim_dir = tempfile::tempdir().unwrap();
        let state_file = Some(sim_dir.path().join("state.json"));
        SimFleet::start_in(
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
        .unwrap_or_else(|e| panic!("the simulator does not start: {e}"));
        let fleet = SimFleet {
            names: sim.cluster_names.clone(),
            sim,
            sim_dir,
            fleet_dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fleet.fleet_dir().join("claims")).unwrap();
        for name in &fleet.names {
            fleet.put(&cluster(name));
        }
        fleet
    }

    /// Shuts the simulator down, awaits `while_down`, and starts it again with the same
    /// configuration: from its state file, on the address saved there. Returns the stopped
    /// simulator too, whose audit log and counters tell what happened before the restart.
    pub async fn restart(self, while_down: impl Future<Output = ()>) -> (SimFleet, Arc<Sim>) {
        let SimFleet {
            sim,
            names,
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
        let sim = sim::start(config)
            .await
            .unwrap_or_else(|e| panic!("the simulator does not start again: {e}"));
        let restarted = SimFleet {
            sim,
            names,
            sim_dir,
            fleet_dir,
        };
        (restarted, stopped)
    }

    /// Stops the simulator.
    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }

    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// The fleet directory the agent reads (unless given a Git source).
    pub fn fleet_dir(&self) -> &Path {
        self.fleet_dir.path()
    }

    /// The simulator's folder: its kubeconfigs (the agent's credentials directory), CA,
    /// admin token and state file; the agent's cache and log go here too.
    pub fn sim_dir(&self) -> &Path {
        self.sim_dir.path()
    }

    /// Puts `doc` into the fleet directory at its path, whole.
    pub fn put(&self, doc: &impl Document) {
        write_doc(self.fleet_dir(), doc);
    }

    /// Puts every file of `files` into the fleet directory.
    pub fn put_all(&self, files: &FleetFiles) {
        write_files(self.fleet_dir(), files);
    }

    /// Writes raw text at `rel`, for the tests whose subject is that text.
    pub fn write(&self, rel: &str, text: &str) {
        write_atomic(&self.fleet_dir().join(rel), text);
    }

    /// Removes the file at `rel` from the fleet directory.
    pub fn remove(&self, rel: &str) {
        let path = self.fleet_dir().join(rel);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Removes `doc`'s file from the fleet directory.
    pub fn remove_doc(&self, doc: &impl Document) {
        self.remove(&doc.path());
    }

    /// Puts `claim` into the fleet directory, creating its namespace on its cluster first
    /// (the agent writes into a claim's namespace; it does not create it).
    pub async fn add_claim(&self, claim: &Claim) {
        self.namespace(claim.cluster(), claim.namespace_or_default())
            .await;
        self.put(claim);
    }

    /// The claim `app` (namespace `default`) of every cluster.
    pub fn claim_everywhere(&self) {
        for name in &self.names {
            self.put(&claim("app", name));
        }
    }

    /// Creates namespace `name` on `cluster` unless it exists.
    pub async fn namespace(&self, cluster: &str, name: &str) {
        psql_fleet::cluster::namespace::ensure(self.client(cluster).await, name)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name} on {cluster}: {e}"));
    }

    /// A kube-rs client of one simulated cluster, from its kubeconfig as written now (as
    /// anyone holding it would connect).
    pub async fn client(&self, cluster: &str) -> kube::Client {
        crate::sim::client(&self.sim, cluster).await
    }

    /// One admin API call through `psql-fleet sim fault`'s client; fails the test unless
    /// it is answered 2xx. The answer's JSON (`null` when it has none).
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let args = FaultArgs {
            admin: self.sim.admin_url(),
            dir: self.sim_dir().to_path_buf(),
            action: FaultAction::Audit { cluster: None },
        };
        let (code, text) = sim_fault::call(&args, method, path, &body)
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
        assert!(code < 300, "admin {method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Rotates `cluster`'s token: the old one is refused from now on, and the kubeconfig
    /// on disk is rewritten with the new one.
    pub async fn rotate_token(&self, cluster: &str) {
        self.admin(
            "POST",
            &format!("/clusters/{cluster}/rotate-token"),
            Value::Null,
        )
        .await;
    }

    /// Rotates `cluster`'s token out of band: the old one is refused from now on, the
    /// kubeconfig on disk keeps it (clients fail with 401 until someone writes the new
    /// one), and the new token is returned.
    pub async fn rotate_token_out_of_band(&self, cluster: &str) -> String {
        let answer = self
            .admin(
                "POST",
                &format!("/clusters/{cluster}/rotate-token"),
                serde_json::json!({ "writeKubeconfig": false }),
            )
            .await;
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("rotate-token of {cluster} answered {answer}"))
            .to_string()
    }

    /// Ends every watch open on `cluster` with 410 Gone, as an API server whose watch
    /// cache moved on does.
    pub async fn expire_watches(&self, cluster: &str) {
        self.admin(
            "POST",
            &format!("/clusters/{cluster}/expire-watches"),
            Value::Null,
        )
        .await;
    }

    /// Replaces the cluster's injected faults (`{}` clears them).
    pub async fn faults(&self, cluster: &str, faults: Value) {
        self.admin("POST", &format!("/clusters/{cluster}/faults"), faults)
            .await;
    }

    /// Removes the CRD `crd` (such as [`kube_sim::crds::USAGE_CRD`]) from `cluster`, as
    /// `kubectl delete crd` does: its kind is no longer served (discovery leaves it out,
    /// its paths answer 404) and its objects go. A cluster can also start without CRDs:
    /// `SimConfig { without_crds: vec![...], .. }` through [`SimFleet::start_with`].
    pub async fn uninstall_crd(&self, cluster: &str, crd: &str) {
        self.admin(
            "POST",
            &format!("/clusters/{cluster}/crds"),
            serde_json::json!({ "uninstall": [crd] }),
        )
        .await;
    }

    /// Installs the CRD `crd` on `cluster`: its kind is served (Established) at once.
    pub async fn install_crd(&self, cluster: &str, crd: &str) {
        self.admin(
            "POST",
            &format!("/clusters/{cluster}/crds"),
            serde_json::json!({ "install": [crd] }),
        )
        .await;
    }

    /// The names of the CRDs `cluster` holds now.
    pub async fn installed_crds(&self, cluster: &str) -> Vec<String> {
        let answer = self
            .admin("GET", &format!("/clusters/{cluster}/crds"), Value::Null)
            .await;
        serde_json::from_value(answer["installed"].clone()).unwrap_or_default()
    }

    /// Every mutating request the simulator served for `cluster`, oldest first.
    pub fn audit(&self, cluster: &str) -> Vec<AuditEntry> {
        self.sim.sim.audit.entries(Some(cluster))
    }

    /// Every mutating request the simulator served, oldest first.
    pub fn audit_all(&self) -> Vec<AuditEntry> {
        self.sim.sim.audit.entries(None)
    }

    /// Deletions the simulator accepted (2xx), on any cluster: the ones that took
    /// something away.
    pub fn deletions(&self) -> Vec<AuditEntry> {
        accepted_deletions(self.audit_all())
    }

    /// Server-side applies by psql-fleet the simulator accepted on `cluster`.
    pub fn applies(&self, cluster: &str) -> usize {
        self.audit(cluster)
            .iter()
            .filter(|e| {
                e.verb == "apply"
                    && e.code < 300
                    && e.field_manager.as_deref() == Some("psql-fleet")
            })
            .count()
    }

    /// `namespace/name` of the Releases and Usages on `cluster`.
    pub fn live_objects(&self, cluster: &str) -> Vec<String> {
        live_objects(&self.sim, cluster)
    }

    /// Where the agent keeps its cache and rollout state: kept across agent restarts.
    pub fn agent_cache(&self) -> PathBuf {
        self.sim_dir().join("agent-cache")
    }

    /// The configuration of an agent on this fleet.
    pub fn agent_config(&self, options: &AgentOptions) -> Config {
        Config {
            source: options
                .source
                .clone()
                .unwrap_or_else(|| SourceSpec::Dir(self.fleet_dir().to_path_buf())),
            reference: options.reference.clone().unwrap_or(GitRef::Head),
            credentials: Credentials::default(),
            cache_dir: self.agent_cache(),
            credentials_dir: self.sim_dir().to_path_buf(),
            // Agent::start binds its own port.
            listen: "127.0.0.1:0".parse().unwrap(),
            dry_run: options.dry_run,
            allow_mass_prune: options.allow_mass_prune,
            interval: options.interval.unwrap_or(Duration::from_secs(1)),
            resync: options
                .resync
                .or(options.interval)
                .unwrap_or(Duration::from_secs(1)),
            max_concurrency: options.max_concurrency.unwrap_or(4),
            state_dir: None,
            webhook: options.webhook.clone(),
            wait_for_source: options.wait_for_source,
            control: self.control(options),
            verify: options.verify.clone(),
            leader_election: None,
            shards: 1,
            gates: psql_fleet::agent::gates::Settings {
                prometheus_url: options.prometheus_url.clone(),
                interval: Duration::from_millis(250),
            },
            github_approvals: options
                .github_approvals
                .clone()
                .map(|client| (client, Duration::from_millis(250))),
            cluster_api: options.cluster_api.clone(),
        }
    }

    /// The control API of an agent on this fleet: the harness's token, unless the options
    /// say none.
    pub fn control(&self, options: &AgentOptions) -> Control {
        if options.no_control_token {
            return Control::default();
        }
        let file = crate::agent::control_token_file(self.sim_dir());
        Control {
            tokens: Some(Tokens::from_file(&file).unwrap()),
            status_requires_token: false,
        }
    }

    /// Starts the agent in-process on this fleet and waits until it serves its status.
    pub async fn start_agent(&self, options: AgentOptions) -> Agent {
        Agent::start(self.agent_config(&options), options.observers.clone()).await
    }

    /// Starts `psql-fleet run` on this fleet in a child process (its log in the simulator's
    /// folder, its cache kept across restarts) and waits until it serves its status.
    pub async fn spawn_agent(&self, options: ProcessOptions) -> AgentProcess {
        let (cache, log) = match &options.name {
            Some(name) => (
                self.sim_dir().join(format!("agent-cache-{name}")),
                self.sim_dir().join(format!("agent-{name}.log")),
            ),
            None => (self.agent_cache(), self.sim_dir().join("agent.log")),
        };
        AgentProcess::spawn(self.fleet_dir(), self.sim_dir(), &cache, &log, &options).await
    }
}
