//! Sweeping stale runs: a run dir whose owner process is gone (PID missing, or reused — the start
//! time differs) has its manifest cleaned up. Runs of live owners, and anything not listed in a
//! manifest, are never touched.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, SystemTime},
};

use crate::{
    cleanup,
    config::RUNS_ROOT,
    manifest::{Manifest, OWNER_FILE, read_owner},
};

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Run ids that were cleaned up.
    pub swept: Vec<String>,
    pub errors: Vec<String>,
}

/// A run dir without a readable owner file is only garbage once it is this old (it may be a run
/// being created right now).
const OWNERLESS_GRACE: Duration = Duration::from_secs(60);

/// Cleans up every run under [`RUNS_ROOT`] whose owner is dead.
pub fn sweep_stale_runs() -> SweepReport {
    sweep_stale_runs_in(Path::new(RUNS_ROOT))
}

pub fn sweep_stale_runs_in(root: &Path) -> SweepReport {
    let mut report = SweepReport::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return report;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() || !is_stale(&dir) {
            continue;
        }
        // Another process may be sweeping the same run: whoever holds the lock does it, and the
        // others wait for it, so that every stale run is gone when this returns.
        let Some(_lock) = lock(&dir) else {
            report.errors.push(format!("stale run {}: its sweep lock stayed busy", dir.display()));
            continue;
        };
        if !dir.exists() {
            continue; // swept by the process that held the lock
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let errors = match Manifest::load(&dir) {
            Ok(manifest) => cleanup::clean(&manifest, &dir),
            Err(_) if !dir.join(crate::manifest::MANIFEST_FILE).exists() => cleanup::clean(&Manifest::default(), &dir),
            Err(e) => vec![format!("{e:#}; leaving {} alone", dir.display())],
        };
        report.errors.extend(errors.into_iter().map(|e| format!("stale run {name}: {e}")));
        report.swept.push(name);
    }
    report
}

fn is_stale(dir: &Path) -> bool {
    match read_owner(dir) {
        Some(owner) => !owner.is_alive(),
        None => {
            let modified = dir.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::now());
            modified.elapsed().unwrap_or_default() > OWNERLESS_GRACE
        }
    }
}

/// How long to wait for another process's sweep of the same run.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An exclusive `flock` on the run's owner file (released when the file closes, also if the
/// sweeper dies), waiting up to [`LOCK_WAIT`] for another sweeper to finish.
fn lock(dir: &Path) -> Option<File> {
    let path = dir.join(OWNER_FILE);
    let file = File::open(&path).or_else(|_| File::open(dir)).ok()?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: plain syscall on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some(file);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
