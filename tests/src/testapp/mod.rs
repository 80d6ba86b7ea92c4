//! `ambit-testapp`, the program e2e tests run inside pods (the binary is a thin wrapper around
//! [`main`]). Std only, a thread per connection, JSON lines on stdout.

mod args;
mod connect;
mod dial;
mod emit;
mod many;
mod serve;
pub mod stream;

pub use args::USAGE;

/// Runs the app with `args` (without the program name); returns the process exit status.
pub fn main(args: &[String]) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let result = match command.as_str() {
        "serve" => serve::run(rest),
        "connect" => connect::run(rest),
        "connect-many" => many::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ambit-testapp: {message}\n{USAGE}");
            2
        }
    }
}
