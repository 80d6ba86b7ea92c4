//! `node-proxy`: see `docs/architecture.md`. This file only parses flags, sets up logging and the
//! runtime; `app::run` does the rest.

mod app;
mod capture;
mod certs;
mod cluster;
mod config;
mod control_plane;
mod http;
mod mesh;
mod namespaces;
mod netns;
mod pods;
mod policy;
mod proxy;
mod records;

use std::process::ExitCode;

use clap::Parser;
use config::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let print_config = args.print_config;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("node-proxy: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if print_config {
        println!("{}", serde_json::to_string_pretty(&config).expect("config serializes"));
        return ExitCode::SUCCESS;
    }
    ambit_common::logging::init(&config.log, config.log_format);
    // Libraries that build rustls configs without naming a provider (kube's client) find ours.
    ambit_common::identity::install_default_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("node-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("node-proxy failed: {e:#}");
            eprintln!("node-proxy failed: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Access lines still buffered (see ambit_common::logging).
    ambit_common::logging::flush();
    exit
}
