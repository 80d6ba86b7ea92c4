//! Cgroup v2 directories: find the mount, create, move into, empty and remove.

use std::{
    io,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// The first `cgroup2` mount in `/proc/mounts` (e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    static MOUNT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = MOUNT.get_or_init(|| {
        let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
        mounts.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(target)))
        })
    });
    found.clone().context("no cgroup2 filesystem is mounted (see /proc/mounts); the harness needs cgroup v2")
}

/// `/proc/mounts` escapes spaces and a few other characters as `\ooo`.
fn unescape_mount_path(path: &str) -> String {
    let mut out = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let digits: String = chars.by_ref().take(3).collect();
        match u8::from_str_radix(&digits, 8) {
            Ok(b) => out.push(char::from(b)),
            Err(_) => {
                out.push('\\');
                out.push_str(&digits);
            }
        }
    }
    out
}

/// Creates one cgroup directory; its parent must exist and it must not.
pub fn create(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))
}

/// PIDs in the cgroup (empty if it does not exist).
pub fn procs(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in the cgroup (`cgroup.kill`, Linux 5.14+).
pub fn kill_all(path: &Path) -> io::Result<()> {
    std::fs::write(path.join("cgroup.kill"), "1")
}

/// Removes a cgroup that has no child cgroups. While processes remain it kills them (the cgroup is
/// the run's own) and retries, for at most `timeout`. Missing is fine.
pub fn remove(path: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut killed = false;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                if !killed && !procs(path).is_empty() {
                    let _ = kill_all(path);
                    killed = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => bail!("removing cgroup {}: {e} (processes left: {:?})", path.display(), procs(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_paths() {
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_path("/sys/fs/cgroup"), "/sys/fs/cgroup");
    }
}
