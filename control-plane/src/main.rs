//! `control-plane`: see the library docs and `docs/architecture.md`. Parses flags, sets up
//! logging and the runtime, and runs [`ambit_control_plane::app::run`].

use std::process::ExitCode;

use ambit_control_plane::config::Args;
use clap::Parser;

fn main() -> ExitCode {
    let args = Args::parse();
    let print_config = args.print_config;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("control-plane: invalid configuration: {e}");
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
            eprintln!("control-plane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let exit = match runtime.block_on(ambit_control_plane::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("control-plane failed: {e:#}");
            eprintln!("control-plane failed: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Access lines still buffered (see ambit_common::logging).
    ambit_common::logging::flush();
    exit
}
