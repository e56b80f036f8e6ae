//! `psql-fleet render`: the desired objects of every cluster, deterministic, as YAML or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::{load_dir, print_diagnostics};
use fleet_core::fleetdir::LoadedFleet;
use fleet_core::render::{render_cluster, Observed};

/// Print the objects each cluster should hold: its Releases, and with --assume-ready the
/// Usages that appear once both Releases of a claim are Ready.
///
/// YAML output is a stream of documents grouped by cluster under a comment header; JSON
/// maps each cluster name to the list of its objects. Sorted by cluster, then kind, then
/// name. Needs no credentials.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The fleet directory (holding fleet.yaml, clusters/ and claims/).
    pub fleet_dir: PathBuf,
    /// Render only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Render as if every Release were Ready, so that the Usages are included.
    #[arg(long)]
    pub assume_ready: bool,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    /// One line per cluster: claims, objects and chart versions, for people.
    Summary,
}

pub fn run(args: &RenderArgs) -> ExitCode {
    let outcome = load_dir(&args.fleet_dir);
    print_diagnostics(&outcome);
    let Some(fleet) = outcome.fleet else {
        eprintln!(
            "{}: not rendered: the fleet does not validate",
            args.fleet_dir.display()
        );
        return ExitCode::FAILURE;
    };
    if let Some(name) = &args.cluster {
        if !fleet.clusters.contains_key(name) {
            eprintln!("{}: no cluster named {name:?}", args.fleet_dir.display());
            return ExitCode::FAILURE;
        }
    }
    let rendered = render_fleet(&fleet, args.cluster.as_deref(), args.assume_ready);
    let text = match args.output {
        Format::Json => serde_json::to_string_pretty(&rendered)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => to_yaml_stream(&rendered).map_err(|e| e.to_string()),
        Format::Summary => Ok(summary(&fleet, &rendered)),
    };
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot serialize the rendered objects: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cluster name to its objects as JSON, for every cluster (or just `only`).
pub fn render_fleet(
    fleet: &LoadedFleet,
    only: Option<&str>,
    assume_ready: bool,
) -> BTreeMap<String, Vec<Value>> {
    let observed = |_: &_| {
        if assume_ready {
            Observed::BOTH_READY
        } else {
            Observed::default()
        }
    };
    fleet
        .clusters
        .values()
        .filter(|c| only.is_none_or(|name| c.name == name))
        .map(|cluster| {
            let objects = render_cluster(
                &fleet.settings,
                cluster,
                fleet.claims_of(&cluster.name),
                observed,
            );
            (
                cluster.name.clone(),
                objects.iter().map(|o| o.to_json()).collect(),
            )
        })
        .collect()
}

fn to_yaml_stream(rendered: &BTreeMap<String, Vec<Value>>) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (cluster, objects) in rendered {
        let _ = writeln!(out, "# cluster: {cluster} ({} objects)", objects.len());
        for object in objects {
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(object)?);
        }
    }
    Ok(out)
}

fn summary(fleet: &LoadedFleet, rendered: &BTreeMap<String, Vec<Value>>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>6} {:>8}  {:<20} {:<16} CLAIMS",
        "CLUSTER", "WAVE", "CLAIMS", "OBJECTS", "STACKGRES", "ATLAS"
    );
    for (name, objects) in rendered {
        let Some(cluster) = fleet.clusters.get(name) else {
            continue;
        };
        let versions = fleet.settings.versions_for(&cluster.labels);
        let wave = fleet
            .settings
            .wave_of(&cluster.labels)
            .map_or("-", |w| w.name.as_str());
        let claims: Vec<String> = fleet.claims_of(name).map(|c| c.key().to_string()).collect();
        let _ = writeln!(
            out,
            "{name:<20} {wave:<10} {:>6} {:>8}  {:<20} {:<16} {}",
            claims.len(),
            objects.len(),
            versions.stackgres,
            versions.atlas,
            claims.join(", ")
        );
    }
    out
}
