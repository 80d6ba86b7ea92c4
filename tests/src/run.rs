//! One harness run: its id, run dir, cgroup root and manifest. Every resource is recorded in the
//! manifest *before* it is created, so nothing can leak between creating and recording; the
//! [`RunGuard`] removes exactly what the manifest lists.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use ambit_common::netns::Netns;
use anyhow::{Context, bail};

use crate::{
    cgroup, cleanup,
    config::RUNS_ROOT,
    manifest::{Manifest, OWNER_FILE},
    ns,
    process::Processes,
    procs::ProcId,
};

pub struct Run {
    id: String,
    dir: PathBuf,
    cgroup_root: PathBuf,
    pub(crate) state: Mutex<RunState>,
}

pub(crate) struct RunState {
    pub(crate) manifest: Manifest,
    pub(crate) processes: Processes,
    pub(crate) closed: bool,
}

impl Run {
    /// A new run owned by this process.
    pub fn create() -> anyhow::Result<Arc<Self>> {
        Self::create_owned_by(ProcId::current())
    }

    /// A new run owned by `owner`.
    fn create_owned_by(owner: ProcId) -> anyhow::Result<Arc<Self>> {
        let root = Path::new(RUNS_ROOT);
        std::fs::create_dir_all(root).with_context(|| format!("creating {RUNS_ROOT}"))?;
        let cg2 = cgroup::cgroup2_mount()?;
        for _ in 0..32 {
            let id = new_run_id();
            let (dir, cgroup_root) = (root.join(&id), cg2.join(format!("ambit-{id}")));
            if dir.exists() || cgroup_root.exists() {
                continue;
            }
            let tmp = root.join(format!(".new-{id}"));
            if std::fs::create_dir(&tmp).is_err() {
                continue;
            }
            let manifest = Manifest { run_id: id.clone(), cgroup_root: cgroup_root.clone(), ..Manifest::default() };
            let prepared = std::fs::write(tmp.join(OWNER_FILE), owner.to_line())
                .context("writing the owner file")
                .and_then(|()| manifest.save(&tmp))
                .and_then(|()| std::fs::rename(&tmp, &dir).context("publishing the run dir"));
            if let Err(e) = prepared {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e.context(format!("creating run dir {}", dir.display())));
            }
            let state = RunState { manifest, processes: Processes::default(), closed: false };
            return Ok(Arc::new(Self { id, dir, cgroup_root, state: Mutex::new(state) }));
        }
        bail!("could not find a free run id under {RUNS_ROOT}")
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `/run/ambit-harness/<run id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<cgroup2 mount>/ambit-<run id>`.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// `ambit-<run id>-<suffix>`: the name of a network namespace of this run.
    pub fn netns_name(&self, suffix: &str) -> String {
        format!("ambit-{}-{suffix}", self.id)
    }

    /// Rewrites the owner file (atomically). Tests set a dead owner to turn the run into a stale
    /// one for the sweep.
    pub fn set_owner(&self, owner: ProcId) -> anyhow::Result<()> {
        crate::manifest::write_atomic(&self.dir.join(OWNER_FILE), owner.to_line().as_bytes())
    }

    /// A copy of the manifest as it is now.
    pub fn manifest(&self) -> Manifest {
        self.lock().manifest.clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the manifest and saves it; fails once the run is cleaned up.
    pub(crate) fn record(&self, change: impl FnOnce(&mut Manifest)) -> anyhow::Result<()> {
        let mut state = self.lock();
        if state.closed {
            bail!("run {} is already cleaned up", self.id);
        }
        change(&mut state.manifest);
        state.manifest.save(&self.dir)
    }

    /// Creates network namespace `ambit-<run id>-<suffix>` and opens it.
    pub fn create_netns(&self, suffix: &str) -> anyhow::Result<Netns> {
        let name = self.netns_name(suffix);
        if ns::exists(&name) {
            bail!("network namespace {name} already exists; refusing to adopt a namespace this run did not create");
        }
        self.record(|m| m.netns.push(name.clone()))?;
        if let Err(e) = ns::add(&name) {
            let _ = self.record(|m| m.netns.retain(|n| *n != name));
            return Err(e);
        }
        ns::open(&name)
    }

    /// Deletes one of the run's network namespaces.
    pub fn delete_netns(&self, name: &str) -> anyhow::Result<()> {
        if !self.manifest().netns.iter().any(|n| n == name) {
            bail!("refusing to delete network namespace {name}: run {} did not create it", self.id);
        }
        ns::delete(name)?;
        self.record(|m| m.netns.retain(|n| n != name))
    }

    /// Creates the cgroup `<cgroup root>/<relative>` (the root itself for "").
    pub fn create_cgroup(&self, relative: &str) -> anyhow::Result<PathBuf> {
        let path = if relative.is_empty() { self.cgroup_root.clone() } else { self.cgroup_root.join(relative) };
        if path.exists() {
            bail!("cgroup {} already exists; refusing to adopt it", path.display());
        }
        self.record(|m| m.cgroups.push(path.clone()))?;
        if let Err(e) = cgroup::create(&path) {
            let _ = self.record(|m| m.cgroups.retain(|p| *p != path));
            return Err(e);
        }
        Ok(path)
    }

    /// Removes one of the run's cgroups (killing what is left in it).
    pub fn remove_cgroup(&self, path: &Path) -> anyhow::Result<()> {
        if !self.manifest().cgroups.iter().any(|p| p == path) {
            bail!("refusing to remove cgroup {}: run {} did not create it", path.display(), self.id);
        }
        cgroup::remove(path, std::time::Duration::from_secs(5))?;
        self.record(|m| m.cgroups.retain(|p| p != path))
    }

    /// Records a mount point inside the run dir (e.g. a node proxy's bpffs) for cleanup.
    pub fn add_mount(&self, path: &Path) -> anyhow::Result<()> {
        if !path.starts_with(&self.dir) {
            bail!("mount point {} is outside the run dir {}", path.display(), self.dir.display());
        }
        self.record(|m| {
            if !m.mounts.iter().any(|p| p == path) {
                m.mounts.push(path.to_owned());
            }
        })
    }

    /// Kills every process, then removes everything in the manifest and the run dir. Idempotent.
    pub fn cleanup(&self) -> Vec<String> {
        let mut state = self.lock();
        if state.closed {
            return Vec::new();
        }
        state.closed = true;
        let reaped = state.processes.kill_all();
        state.manifest.processes.retain(|p| !reaped.contains(&p.pid));
        let errors = cleanup::clean(&state.manifest, &self.dir);
        if errors.is_empty() {
            state.manifest = Manifest { run_id: self.id.clone(), ..Manifest::default() };
        }
        errors
    }
}

/// Cleans the run up when dropped — also while a panic unwinds.
pub struct RunGuard {
    run: Arc<Run>,
}

impl RunGuard {
    pub fn new(run: Arc<Run>) -> Self {
        Self { run }
    }

    pub fn run(&self) -> &Arc<Run> {
        &self.run
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let errors = self.run.cleanup();
        if !errors.is_empty() {
            eprintln!("ambit harness: cleanup of run {} was incomplete:", self.run.id());
            for e in errors {
                eprintln!("  - {e}");
            }
        }
    }
}

/// 6 hex digits from the pid, the time and a counter.
fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{:06x}", x & 0xff_ffff)
}
