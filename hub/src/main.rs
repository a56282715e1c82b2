//! `outpost-hub`: the Outpost hub's command line (see `outpost-hub --help`).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use outpost_hub::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

/// The hub's allocator: jemalloc. With glibc's malloc, the runtime's threads
/// contended on malloc's arena locks (memory a session allocates on one
/// thread is often freed on the other). Configured in `.cargo/config.toml`
/// to give freed pages back after about a second; in the fan-out benchmark
/// it took about 17 % off the p99 at 5,000 edges and 20 % off the clients'
/// CPU, the hub's own CPU unchanged (docs/benchmarks.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
