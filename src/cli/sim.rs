//! `psql-fleet sim`: runs the simulated fleet until interrupted, and `psql-fleet sim fault`,
//! a client of its admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use fleet_core::model::duration;
use kube_sim::{self as sim, catalogue::Catalogue, SimConfig};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    /// Number of clusters to serve (an existing --state-file brings its own clusters,
    /// names and labels instead).
    #[arg(long, default_value_t = 3)]
    pub clusters: usize,
    /// Directory for kubeconfigs, clusters/*.yaml, admin-token and ca.crt.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Address to serve on; port 0 (the default) takes the address saved in --state-file
    /// when there is one, so the kubeconfigs' server URLs stay valid.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// How long the simulated provider-helm takes to install or upgrade (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    pub ready_after: Duration,
    /// Seed for the cluster labels (env, region).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "sim-")]
    pub name_prefix: String,
    /// YAML chart catalogue (`charts: {name: {versions: [...], deployments: [...]}}`).
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// Append every mutating request to this file as JSON lines.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Change events kept per cluster at most (as the API server's watch cache, 100 Ki);
    /// older watch resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 100 * 1024)]
    pub event_window: usize,
    /// How long a change event is kept (e.g. 5m, 30s); older watch resourceVersions get
    /// 410 Gone.
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    pub event_max_age: Duration,
    /// Keep the clusters in this JSON file, as a real API server keeps them in etcd: every
    /// object (uid, resourceVersion, managedFields, finalizers), each cluster's
    /// resourceVersion counter, the tokens, the CA and serving certificate, the listen
    /// address. Restored at start when the file exists (an unreadable file is an error,
    /// never an empty fleet); written within a second of every change and at shutdown.
    /// Not kept: open watches (a watch from before the restart gets 410 Gone), injected
    /// faults, the audit log and the request counters (they belong to one process).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Start every cluster without this CRD (e.g. usages.protection.crossplane.io), so
    /// that its kind is not served until it is installed through the admin API
    /// (`POST /admin/clusters/<name>/crds {"install": [...]}`). Repeatable.
    #[arg(long = "without-crd", value_name = "CRD")]
    pub without_crds: Vec<String>,
    /// Make this cluster a Cluster API management cluster: it serves Cluster API's
    /// `Cluster` (clusters.cluster.x-k8s.io) from the start, for `run --cluster-api` to
    /// find the fleet's clusters on. Repeatable.
    #[arg(long = "cluster-api", value_name = "CLUSTER")]
    pub cluster_api: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Injects a fault into a running simulator through its admin API.
    Fault(super::sim_fault::FaultArgs),
}

pub fn run(args: SimArgs) -> ExitCode {
    if let Some(SimCommand::Fault(f)) = args.command {
        return super::sim_fault::run(&f);
    }
    let catalogue = match &args.catalogue {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| Catalogue::from_yaml(&t).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => Catalogue::default(),
    };
    let config = SimConfig {
        clusters: args.clusters,
        out: args.out,
        listen: args.listen,
        ready_after: args.ready_after,
        seed: args.seed,
        name_prefix: args.name_prefix,
        event_window: args.event_window,
        event_max_age: args.event_max_age,
        without_crds: args.without_crds.clone(),
        cluster_api: args.cluster_api.clone(),
        catalogue,
        audit_log: args.audit_log,
        state_file: args.state_file.clone(),
        ..SimConfig::default()
    };
    let state_file = args.state_file;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let handle = match sim::start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("psql-fleet sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "psql-fleet sim: {} clusters at {}, each under the TLS server name <name>.{}",
            handle.cluster_names.len(),
            handle.base_url,
            kube_sim::kubeconfig::SERVER_DOMAIN
        );
        println!("  kubeconfigs:   {}/<name>.yaml", handle.dir.display());
        println!(
            "  Cluster files: {}/clusters/ (use --credentials-dir {})",
            handle.dir.display(),
            handle.dir.display()
        );
        println!(
            "  admin API:     {} (token in {}/admin-token)",
            handle.admin_url(),
            handle.dir.display()
        );
        if let Some(state) = &state_file {
            println!(
                "  state file:    {} (kept across restarts)",
                state.display()
            );
        }
        if let Some(first) = handle.cluster_names.first() {
            println!(
                "  try:           kubectl --kubeconfig {} get ns",
                handle.kubeconfig_path(first).display()
            );
        }
        wait_for_signal().await;
        println!("psql-fleet sim: stopping");
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
