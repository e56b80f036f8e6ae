//! `psql-fleet demo`: the README's main command. One process runs a simulated fleet, lays
//! the example fleet over it (see [`fleet`]), runs the agent on that copy and prints
//! a line each time the fleet moves, until Ctrl-C.

pub mod fleet;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::agent::{self, Config};
use crate::source::git::{Credentials, GitRef};
use crate::source::SourceSpec;
use fleet::{Progress, SimCluster};
use fleet_core::fleetdir::FileTree;
use kube_sim::{self as sim, SimConfig};

/// Run the agent on a simulated fleet: the example fleet's claims on N simulated clusters.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated clusters.
    #[arg(long, default_value_t = 20)]
    pub clusters: usize,
    /// The example fleet whose claims, pins and waves the simulated clusters get.
    #[arg(long, default_value = "fleet")]
    pub fleet: PathBuf,
    /// Where the agent serves /metrics, /api/v1/status, /livez and /readyz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Working directory for the simulator's kubeconfigs and the generated fleet (default:
    /// a new directory under the system temp dir, removed on exit).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How long the simulated provider-helm takes to install a Release (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = fleet_core::model::duration::parse)]
    pub ready_after: Duration,
    /// Longest rollout bake time kept from the example fleet; longer ones are shortened.
    #[arg(long, default_value = "3s", value_parser = fleet_core::model::duration::parse)]
    pub max_bake: Duration,
    /// Seed for the simulated clusters' env and region labels.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The working directory, removed on exit when the demo made it.
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn work_dir(dir: Option<&Path>) -> std::io::Result<WorkDir> {
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
        return Ok(WorkDir {
            path: d.to_path_buf(),
            remove: false,
        });
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = std::env::temp_dir().join(format!("psql-fleet-demo-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(WorkDir { path, remove: true })
}

fn write_fleet(dir: &Path, files: &fleet::Files) -> std::io::Result<()> {
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

pub fn run(args: &DemoArgs) -> ExitCode {
    super::run::init_logging_at(super::run::LogFormat::Text, "warn");
    let example = match FileTree::from_dir(&args.fleet) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e} (run the demo from the repository root, or pass --fleet)");
            return ExitCode::FAILURE;
        }
    };
    let work = match work_dir(args.dir.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot create the working directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo_main(args, &example, &work.path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("simulator: {0}")]
    Simulator(#[from] sim::SimError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Generate(#[from] fleet::GenerateError),
    #[error(transparent)]
    Open(#[from] fleet_core::fleetdir::OpenError),
    #[error("the generated fleet does not validate")]
    Invalid,
    #[error("the agent stopped")]
    AgentStopped,
    #[error("agent: {0}")]
    Agent(#[from] agent::Error),
    #[error("agent: {0}")]
    AgentTask(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Kubeconfig(#[from] crate::cluster::kubeconfig::Error),
    #[error("cluster {cluster}: cannot create namespace {namespace}: {source}")]
    Namespace {
        cluster: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn demo_main(args: &DemoArgs, example: &FileTree, work: &Path) -> Result<(), DemoError> {
    let sim_dir = work.join("sim");
    let fleet_dir = work.join("fleet");
    let handle = sim::start(SimConfig {
        clusters: args.clusters,
        out: sim_dir.clone(),
        ready_after: args.ready_after,
        seed: args.seed,
        ..SimConfig::default()
    })
    .await?;
    let sims: Vec<SimCluster> = handle
        .sim
        .clusters
        .iter()
        .map(|slot| {
            let path = sim_dir.join("clusters").join(format!("{}.yaml", slot.name));
            Ok(SimCluster {
                name: slot.name.clone(),
                labels: slot.labels.iter().cloned().collect(),
                cluster_file: std::fs::read_to_string(&path).map_err(io_at(&path))?,
            })
        })
        .collect::<Result<_, DemoError>>()?;
    let files = fleet::generate(example, &sims, args.max_bake)?;
    write_fleet(&fleet_dir, &files).map_err(io_at(&fleet_dir))?;
    let clusters = files.keys().filter(|p| p.starts_with("clusters/")).count();
    let (waves, wave_of) = create_namespaces(&fleet_dir, &sim_dir).await?;

    let server = format!("http://{}", args.listen);
    println!(
        "psql-fleet demo: {} simulated clusters at {}, each under the TLS server name <name>.{}",
        handle.cluster_names.len(),
        handle.base_url,
        kube_sim::kubeconfig::SERVER_DOMAIN
    );
    println!(
        "  fleet:    {} ({clusters} clusters: the selector claims of {} as they are, its named claims on the clusters with the same env and region labels)",
        fleet_dir.display(),
        args.fleet.display()
    );
    println!("  status:   psql-fleet status --server {server}");
    println!("  metrics:  {server}/metrics");
    println!(
        "  faults:   psql-fleet sim fault --admin {} --dir {} down|up|errors {} ...",
        handle.admin_url(),
        sim_dir.display(),
        handle
            .cluster_names
            .first()
            .map_or("<cluster>", String::as_str)
    );
    println!("  Ctrl-C stops the agent and the simulator.\n");

    let config = Config {
        source: SourceSpec::Dir(fleet_dir.clone()),
        reference: GitRef::Head,
        credentials: Credentials::default(),
        cache_dir: work.join("cache"),
        credentials_dir: sim_dir.clone(),
        listen: args.listen,
        dry_run: false,
        allow_mass_prune: false,
        // `run`'s defaults.
        interval: Duration::from_secs(30),
        resync: Duration::from_secs(600),
        max_concurrency: 8,
        state_dir: None,
        webhook: None,
        wait_for_source: false,
        control: Default::default(),
        verify: None,
        leader_election: None,
        shards: 1,
        gates: Default::default(),
        github_approvals: None,
        cluster_api: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut agent = tokio::spawn(agent::run(config, async move {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let mut last: Option<Progress> = None;
    let mut converged = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let interrupted = super::sim::wait_for_signal();
    tokio::pin!(interrupted);
    let outcome = loop {
        tokio::select! {
            _ = &mut interrupted => break Ok(()),
            result = &mut agent => {
                break Err(match result {
                    Ok(Ok(())) => DemoError::AgentStopped,
                    Ok(Err(e)) => DemoError::Agent(e),
                    Err(e) => DemoError::AgentTask(e),
                });
            }
            _ = tick.tick() => {
                let Some(progress) = poll(&server, &waves, &wave_of).await else { continue };
                if progress.clusters > 0 && last.as_ref() != Some(&progress) {
                    println!("[{:>6.1}s] {progress}", started.elapsed().as_secs_f64());
                    last = Some(progress.clone());
                }
                if progress.all_ready() && !converged {
                    converged = true;
                    println!(
                        "all {} clusters ready in {:.1}s. Try: psql-fleet status --server {server}",
                        progress.clusters,
                        started.elapsed().as_secs_f64()
                    );
                } else if !progress.all_ready() {
                    converged = false;
                }
            }
        }
    };
    println!("psql-fleet demo: stopping");
    let _ = stop_tx.send(());
    if !agent.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut agent).await;
    }
    handle.shutdown().await;
    if outcome.is_ok() {
        println!("psql-fleet demo: stopped");
    }
    outcome
}

/// The fleet's rollout waves in order and the wave of each cluster; and the claims' namespaces, created on each cluster as `kubectl create namespace` would: on
/// a real cluster they exist before anything is applied into them (an apply into a missing
/// namespace is 404 NotFound, here as on Kubernetes).
async fn create_namespaces(fleet_dir: &Path, sim_dir: &Path) -> Result<Waves, DemoError> {
    use crate::cluster::namespace;

    let tree = FileTree::from_dir(fleet_dir)?;
    let fleet = fleet_core::fleetdir::load(&tree)
        .fleet
        .ok_or(DemoError::Invalid)?;
    let waves = fleet
        .settings
        .waves
        .iter()
        .map(|w| w.name.clone())
        .collect();
    let mut wave_of = BTreeMap::new();
    for (name, cluster) in &fleet.clusters {
        if let Some(w) = fleet.settings.wave_of(&cluster.labels) {
            wave_of.insert(name.clone(), w.name.clone());
        }
        let namespaces: std::collections::BTreeSet<String> = fleet
            .claims_of(name)
            .map(|c| c.key().namespace.clone())
            .collect();
        let client = crate::cluster::kubeconfig::client_in(sim_dir, cluster).await?;
        for ns in namespaces {
            if let Err(source) = namespace::ensure(client.clone(), &ns).await {
                return Err(DemoError::Namespace {
                    cluster: name.clone(),
                    namespace: ns,
                    source,
                });
            }
        }
    }
    Ok((waves, wave_of))
}

type Waves = (Vec<String>, BTreeMap<String, String>);

async fn poll(
    server: &str,
    waves: &[String],
    wave_of: &BTreeMap<String, String>,
) -> Option<Progress> {
    let report = super::status::report(server).await?;
    Some(Progress::of(&report, waves, wave_of))
}
