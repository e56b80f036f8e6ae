use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: see the dependency's comment in Cargo.toml for what it
/// bought. The library and its tests keep the system allocator.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    psql_fleet::cli::run(psql_fleet::cli::Cli::parse())
}
