//! Facts about the machine and the workspace: where things are, who we run as, what is on PATH.
//! The only module that reads the environment.

use std::{
    env,
    ffi::OsString,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// The workspace root: xtask's parent directory. Every cargo command runs here.
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the workspace root")
}

/// The cargo that runs us (`CARGO`, set by `cargo run`), so every step uses the same toolchain.
pub(crate) fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` like cargo does.
pub(crate) fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// Where `cargo install` puts binaries: `CARGO_INSTALL_ROOT`, else `CARGO_HOME`, else `~/.cargo`.
pub(crate) fn cargo_install_bin_dir() -> Option<PathBuf> {
    let root = env::var_os("CARGO_INSTALL_ROOT")
        .or_else(|| env::var_os("CARGO_HOME"))
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
    Some(root.join("bin"))
}

/// Whether we run as root (effective uid 0), read from `/proc/self/status` to stay libc-free.
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").ok().and_then(|status| effective_uid(&status)).is_some_and(|uid| uid == 0)
}

/// Whether we run in CI (`CI` set), where privileged tests fail instead of skip.
pub(crate) fn in_ci() -> bool {
    env::var_os("CI").is_some()
}

/// The first executable file named `program` in a PATH directory.
pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(program)).find(|file| is_executable(file))
}

pub(crate) fn is_executable(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The effective uid from the `Uid:` line of `/proc/<pid>/status` (real, effective, saved, fs).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
