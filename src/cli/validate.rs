//! `psql-fleet validate`: every problem of a fleet directory, not only the first.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::load_dir;

/// Check a fleet directory: every claim, cluster and fleet file, and the rules across them.
///
/// Prints every error and warning as `file[:line:column]: document N: field: message` and
/// exits 1 when there is any error. Needs no credentials, so it runs in pull-request CI.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The fleet directory (holding fleet.yaml, clusters/ and claims/).
    pub fleet_dir: PathBuf,
    /// Output format of the findings.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let outcome = load_dir(&args.fleet_dir);
    let errors = outcome.errors().count();
    let warnings = outcome.diagnostics.len() - errors;
    match args.output {
        Format::Json => {
            let report = serde_json::json!({
                "valid": errors == 0,
                "diagnostics": outcome.diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        Format::Text => {
            super::print_diagnostics(&outcome);
            let dir = args.fleet_dir.display();
            match &outcome.fleet {
                Some(fleet) => println!(
                    "{dir}: valid: {} clusters, {} claims{}{}",
                    fleet.clusters.len(),
                    fleet.claims.len(),
                    selector_summary(fleet),
                    if warnings > 0 {
                        format!(", {warnings} warnings")
                    } else {
                        String::new()
                    }
                ),
                None => eprintln!("{dir}: {errors} errors, {warnings} warnings"),
            }
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How many of the claims a selector placed, and from how many selector claims: a fleet
/// of 3 claim files can hold thousands of claims, which the count alone would not explain.
fn selector_summary(fleet: &fleet_core::fleetdir::LoadedFleet) -> String {
    let placed: Vec<_> = fleet
        .claims
        .iter()
        .filter(|c| c.selector.is_some())
        .map(|c| &c.origin)
        .collect();
    if placed.is_empty() {
        return String::new();
    }
    let sources: std::collections::BTreeSet<_> = placed.iter().collect();
    let plural = if sources.len() == 1 { "" } else { "s" };
    format!(
        " ({} placed by {} selector claim{plural})",
        placed.len(),
        sources.len()
    )
}
