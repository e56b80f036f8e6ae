use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    psql_fleet::cli::run(psql_fleet::cli::Cli::parse())
}
