//! The entry point the tool binaries share (`ambit-bench`, `ambit-waypoint-bench`, `ambit-demo`):
//! `--help` prints the usage, and a failure prints its chain of causes as one message and exits 1
//! — not the `Debug` form `main() -> anyhow::Result` prints, which adds a backtrace whenever
//! `RUST_BACKTRACE` is set.

use std::process::ExitCode;

/// Runs `main` with the command-line arguments (without the program name).
pub fn run(name: &str, usage: &str, main: impl FnOnce(&[String]) -> anyhow::Result<()>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    match main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
