//! `waypoint`: see `docs/architecture.md` (Waypoint). This file only parses flags, sets up
//! logging and the runtime; `ambit_waypoint::app::run` does the rest.

use std::process::ExitCode;

use ambit_waypoint::config::Args;
use clap::Parser;

/// Per-request allocations (headers, records, buffers) are a large share of the waypoint's user
/// CPU; mimalloc serves them from per-thread pages, cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let print_config = args.print_config;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("waypoint: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if print_config {
        println!("{}", serde_json::to_string_pretty(&config).expect("config serializes"));
        return ExitCode::SUCCESS;
    }
    ambit_common::logging::init(&config.log, config.log_format);
    // The control side (Discovery, the CA client, the admin API); the data path runs on the
    // workers' own runtimes (`ambit_waypoint::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("waypoint: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = match runtime.block_on(ambit_waypoint::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("waypoint failed: {e:#}");
            eprintln!("waypoint failed: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Access lines still buffered (see ambit_common::logging).
    ambit_common::logging::flush();
    exit
}
