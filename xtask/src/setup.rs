//! `cargo xtask setup`: install what a fresh machine lacks to build and test Ambit. Idempotent:
//! every step checks first and installs only what is missing, then checks again.

use crate::{
    apt, bpf_linker,
    cmd::Cmd,
    error::{Error, Result},
};

/// What a step found before doing anything.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Present,
    /// Missing or unusable, and why.
    Missing(String),
}

/// What a step did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Status {
    AlreadyPresent,
    Installed,
}

/// One thing the machine needs: how to tell whether it is there, and how to install it.
pub(crate) struct Step {
    pub(crate) what: &'static str,
    pub(crate) check: fn() -> Result<Check>,
    pub(crate) install: fn() -> Result,
}

/// In order: bpf-linker's build needs the nightly toolchain's LLVM.
const STEPS: [Step; 5] = [
    Step { what: "nightly toolchain", check: nightly_toolchain, install: install_nightly },
    Step { what: "nightly rust-src", check: nightly_rust_src, install: install_rust_src },
    Step { what: "bpf-linker 0.13 (LLVM 22)", check: bpf_linker::check, install: bpf_linker::install },
    Step { what: "cargo-nextest", check: cargo_nextest, install: install_cargo_nextest },
    Step {
        what: "ip (iproute2) and nsenter (util-linux)",
        check: || Ok(apt::check_programs(&["ip", "nsenter"])),
        install: || apt::install(&["iproute2", "util-linux"]),
    },
];

/// Runs every setup step.
pub(crate) fn run() -> Result {
    for step in &STEPS {
        ensure(step)?;
    }
    Ok(())
}

/// Checks a step, installs it if needed, and checks again, printing one progress line per phase.
pub(crate) fn ensure(step: &Step) -> Result<Status> {
    let in_step = |e: Error| Error::new(format!("[setup] {}: {e}", step.what));
    let why = match (step.check)().map_err(in_step)? {
        Check::Present => {
            println!("[setup] {} ... ok", step.what);
            return Ok(Status::AlreadyPresent);
        }
        Check::Missing(why) => why,
    };
    println!("[setup] {} ... {why}: installing", step.what);
    (step.install)().map_err(in_step)?;
    match (step.check)().map_err(in_step)? {
        Check::Present => {
            println!("[setup] {} ... installed", step.what);
            Ok(Status::Installed)
        }
        Check::Missing(why) => Err(in_step(Error::new(format!(
            "still unusable after installing ({why}); the output above should say why"
        )))),
    }
}

fn nightly_toolchain() -> Result<Check> {
    let list = rustup(&["toolchain", "list"])?;
    Ok(if list.lines().any(is_nightly) { Check::Present } else { Check::Missing("not installed".to_owned()) })
}

fn install_nightly() -> Result {
    Cmd::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]).run()
}

fn nightly_rust_src() -> Result<Check> {
    let installed = rustup(&["component", "list", "--toolchain", "nightly", "--installed"])?;
    Ok(if installed.lines().any(|c| c.trim() == "rust-src") {
        Check::Present
    } else {
        Check::Missing("not installed".to_owned())
    })
}

fn install_rust_src() -> Result {
    Cmd::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]).run()
}

fn cargo_nextest() -> Result<Check> {
    Ok(match Cmd::cargo().args(["nextest", "--version"]).probe() {
        Ok(_) => Check::Present,
        Err(_) => Check::Missing("`cargo nextest` not found".to_owned()),
    })
}

fn install_cargo_nextest() -> Result {
    Cmd::cargo().args(["install", "cargo-nextest", "--locked"]).run()
}

/// The output of a rustup query; rustup itself is the one thing setup cannot install.
fn rustup(args: &[&str]) -> Result<String> {
    Cmd::new("rustup").args(args).probe().map_err(|why| {
        Error::new(format!(
            "`rustup {}` failed ({why}): Ambit needs rustup to manage its stable and nightly \
             toolchains; install it from https://rustup.rs",
            args.join(" ")
        ))
    })
}

/// A `rustup toolchain list` line naming a nightly: `nightly-x86_64-unknown-linux-gnu (default)`.
/// Dated nightlies (`nightly-2026-05-01-…`) do not count: `+nightly` would not select them.
fn is_nightly(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or("");
    name == "nightly"
        || name.strip_prefix("nightly-").is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn recognises_the_nightly_toolchain() {
        assert!(is_nightly("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_nightly("nightly-x86_64-unknown-linux-gnu (active, default)"));
        assert!(!is_nightly("nightly-2026-05-01-x86_64-unknown-linux-gnu"));
        assert!(!is_nightly("stable-x86_64-unknown-linux-gnu (active, default)"));
        assert!(!is_nightly("1.95.0-x86_64-unknown-linux-gnu"));
        assert!(!is_nightly(""));
    }

    thread_local! {
        static INSTALLED: Cell<bool> = const { Cell::new(false) };
        static INSTALLS: Cell<u32> = const { Cell::new(0) };
    }

    fn fake_check() -> Result<Check> {
        Ok(if INSTALLED.get() { Check::Present } else { Check::Missing("absent".to_owned()) })
    }

    fn fake_install() -> Result {
        INSTALLS.set(INSTALLS.get() + 1);
        INSTALLED.set(true);
        Ok(())
    }

    #[test]
    fn ensure_installs_once_then_reports_present() {
        let step = Step { what: "fake", check: fake_check, install: fake_install };
        assert_eq!(ensure(&step), Ok(Status::Installed));
        assert_eq!(ensure(&step), Ok(Status::AlreadyPresent));
        assert_eq!(INSTALLS.get(), 1);
    }

    #[test]
    fn ensure_fails_when_install_does_not_help() {
        let step = Step { what: "fake", check: || Ok(Check::Missing("broken".to_owned())), install: || Ok(()) };
        let err = ensure(&step).unwrap_err().to_string();
        assert!(err.starts_with("[setup] fake: still unusable after installing (broken)"), "{err}");
    }
}
