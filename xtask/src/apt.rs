//! System programs from Debian/Ubuntu packages: check they are on PATH, install with apt-get.

use crate::{
    cmd::Cmd,
    error::{Error, Result},
    host,
    setup::Check,
};

/// `Present` when every program is on PATH, else which ones are missing.
pub(crate) fn check_programs(programs: &[&str]) -> Check {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| host::find_on_path(p).is_none()).collect();
    if missing.is_empty() { Check::Present } else { Check::Missing(format!("{} not on PATH", missing.join(", "))) }
}

/// `apt-get install` without prompts or recommended extras; when that fails (usually package
/// lists that are stale or were never fetched, as in fresh containers) refresh them once and retry.
pub(crate) fn install(packages: &[&str]) -> Result {
    let list = packages.join(" ");
    if host::find_on_path("apt-get").is_none() {
        return Err(Error::new(format!(
            "apt-get is not available: install the packages providing them ({list} on Debian/Ubuntu) \
             with your system's package manager, then rerun"
        )));
    }
    if !host::is_root() {
        return Err(Error::new(format!(
            "installing packages needs root: run `sudo apt-get install {list}`, or rerun this \
             command as root"
        )));
    }
    let apt = |args: &[&str]| Cmd::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let install = apt(&["install", "-y", "--no-install-recommends"]).args(packages);
    if install.run_ok()? {
        return Ok(());
    }
    println!("[setup] apt-get install failed: refreshing the package lists and trying once more");
    apt(&["update"]).run()?;
    install.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_only_the_missing_programs() {
        assert_eq!(check_programs(&["sh"]), Check::Present);
        assert_eq!(
            check_programs(&["sh", "ambit-no-such-tool", "ambit-nor-this"]),
            Check::Missing("ambit-no-such-tool, ambit-nor-this not on PATH".to_owned())
        );
    }
}
