//! Everything the harness reads from the environment, in one place.
//!
//! | variable | meaning |
//! |---|---|
//! | `AMBIT_BIN_DIR` | where `node-proxy` and `ambit-testapp` are (default: the directory of the running test binary, or its parent when that is `deps`) |
//! | `CI` | set: a privileged test without root fails instead of being skipped |

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Where every run keeps its run dir (`<RUNS_ROOT>/<run-id>/`).
pub const RUNS_ROOT: &str = "/run/ambit-harness";

/// Whether we run in CI (env `CI` is set).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The directory holding the workspace's binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AMBIT_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let dir = exe.parent().context("the running executable has no parent directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        return Ok(dir.parent().unwrap_or(dir).to_owned());
    }
    Ok(dir.to_owned())
}

/// The path of the workspace binary `name`, which must exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "binary {name} not found at {}: run `cargo xtask build` (or `cargo build --workspace --bins`), \
             or point AMBIT_BIN_DIR at the directory that holds it",
            path.display()
        );
    }
    Ok(path)
}

/// The path of `ambit-testapp`.
pub fn testapp() -> anyhow::Result<PathBuf> {
    binary("ambit-testapp")
}

/// The path of `node-proxy`.
pub fn node_proxy() -> anyhow::Result<PathBuf> {
    binary("node-proxy")
}
