//! The `psql-fleet` command line (SPEC 2.7).

pub mod cache_dir;
pub mod demo;
pub mod log_fields;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod run;
pub mod sim;
pub mod sim_fault;
pub mod status;
pub mod validate;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fleet_core::fleetdir::{self, FileTree, LoadOutcome};

#[derive(Parser, Debug)]
#[command(
    name = "psql-fleet",
    version,
    about = "GitOps fleet agent for PostgreSQL tooling: renders Psql claims into provider-helm Releases and a Crossplane Usage, per cluster",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Validate(validate::ValidateArgs),
    Demo(demo::DemoArgs),
    Render(render::RenderArgs),
    Plan(Box<plan::PlanArgs>),
    Run(Box<run::RunArgs>),
    Status(status::StatusArgs),
    Rollout(rollout::RolloutArgs),
    /// Serves simulated Kubernetes clusters on loopback (see `psql-fleet sim --help`).
    Sim(Box<sim::SimArgs>),
}

/// Runs the command and returns the process exit code: 0 success, 1 a reported failure.
pub fn run(cli: Cli) -> ExitCode {
    crate::cluster::transport::install_client_provider();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Rollout(args) => rollout::run(&args),
        Command::Sim(args) => sim::run(*args),
    }
}

/// Reads and loads a fleet directory, turning an unreadable directory into a diagnostic.
pub fn load_dir(dir: &Path) -> LoadOutcome {
    match FileTree::from_dir(dir) {
        Ok(tree) => fleetdir::load(&tree),
        Err(message) => LoadOutcome {
            fleet: None,
            diagnostics: vec![fleet_core::model::Diagnostic::file(
                dir.display().to_string(),
                message,
            )],
        },
    }
}

/// Prints diagnostics to stderr, one per line.
pub fn print_diagnostics(outcome: &LoadOutcome) {
    // A file name or a map key from the fleet may hold anything a terminal obeys.
    for d in &outcome.diagnostics {
        eprintln!("{}", fleet_core::text::escape(&d.to_string()));
    }
}
