//! Removing what a manifest lists, in a safe order: processes, network namespaces, bpffs mounts,
//! cgroups (deepest first), the run dir. Anything that does not carry the run's name is refused.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{cgroup, manifest::Manifest, ns};

/// Cleans up everything `manifest` lists, then removes `run_dir`. Returns the problems met (the
/// cleanup goes on past each one).
pub fn clean(manifest: &Manifest, run_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for process in &manifest.processes {
        if !process.kill_and_wait_gone(Duration::from_secs(3)) {
            errors.push(format!("process {} survived SIGKILL", process.pid));
        }
    }
    let prefix = format!("ambit-{}-", manifest.run_id);
    for name in &manifest.netns {
        if manifest.run_id.is_empty() || !name.starts_with(&prefix) {
            errors.push(format!("refusing to delete network namespace {name}: not named for run {}", manifest.run_id));
        } else if let Err(e) = ns::delete(name) {
            errors.push(format!("{e:#}"));
        }
    }
    for mount in &manifest.mounts {
        if !mount.starts_with(run_dir) {
            errors.push(format!("refusing to unmount {}: outside the run dir", mount.display()));
        } else if let Err(e) = unmount(mount) {
            errors.push(e);
        }
    }
    clean_cgroups(manifest, &mut errors);
    remove_run_dir(run_dir, &mut errors);
    errors
}

fn clean_cgroups(manifest: &Manifest, errors: &mut Vec<String>) {
    let root = &manifest.cgroup_root;
    let expected_name = format!("ambit-{}", manifest.run_id);
    let root_ok = !manifest.run_id.is_empty() && root.file_name().is_some_and(|n| n == expected_name.as_str());
    let mut cgroups: Vec<&PathBuf> = manifest.cgroups.iter().collect();
    // Deepest first: children before their parents.
    cgroups.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for path in cgroups {
        if !root_ok || !path.starts_with(root) {
            errors.push(format!("refusing to remove cgroup {}: not inside {}", path.display(), root.display()));
        } else if let Err(e) = cgroup::remove(path, Duration::from_secs(5)) {
            errors.push(format!("{e:#}"));
        }
    }
}

/// Lazily unmounts everything mounted at `path` (stacked mounts included).
fn unmount(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    for _ in 0..8 {
        // SAFETY: a valid NUL-terminated path; MNT_DETACH only detaches the mount.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                // Not (or no longer) a mount point, or gone.
                Some(libc::EINVAL | libc::ENOENT) => Ok(()),
                _ => Err(format!("unmounting {}: {e}", path.display())),
            };
        }
    }
    Err(format!("{} is still mounted after 8 unmounts", path.display()))
}

/// Mount points at or below `dir` (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn remove_run_dir(run_dir: &Path, errors: &mut Vec<String>) {
    let left = mounts_under(run_dir);
    if !left.is_empty() {
        errors.push(format!("not removing {}: still mounted there: {left:?}", run_dir.display()));
        return;
    }
    match std::fs::remove_dir_all(run_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => errors.push(format!("removing {}: {e}", run_dir.display())),
    }
}
