//! `ambit-httpapp`, the HTTP/1.1, h2c and gRPC server and load client e2e tests run inside pods
//! (the binary is a thin wrapper around [`main`]). JSON lines on stdout, like `ambit-testapp`.
//!
//! - `serve` answers every request with a JSON echo of what it saw; control headers script the
//!   answer ([`script`]); `--protocol grpc` serves `ambit.test.Echo/Call` instead ([`grpc`]).
//! - `load` sends N requests over C workers and prints a summary ([`load`]).
//! - `upgrade` makes one WebSocket-style upgrade and checks the echo ([`upgrade`]).

mod args;
mod echo;
mod emit;
mod grpc;
mod load;
mod observed;
mod script;
mod serve;
mod upgrade;

pub use args::USAGE;

/// Runs the app with `args` (without the program name); returns the process exit status:
/// 0 when a load run completed (whatever the answers), 1 when serving failed, 2 on bad usage.
pub fn main(args: &[String]) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let result = match command.as_str() {
        "serve" => args::parse_serve(rest).map(|args| block_on(serve::run(args))),
        "load" => args::parse_load(rest).map(|args| block_on(load::run(args))),
        "upgrade" => args::parse_upgrade(rest).map(|args| block_on(upgrade::run(args))),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            return 0;
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            eprintln!("ambit-httpapp {command}: {message}");
            1
        }
        Err(message) => {
            eprintln!("ambit-httpapp: {message}\n{USAGE}");
            2
        }
    }
}

/// Runs `future` on a current-thread runtime: one core is plenty for a test client or server.
fn block_on<F: Future<Output = Result<(), String>>>(future: F) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(future)
}
