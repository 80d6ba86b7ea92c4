//! The record of everything one run created (`<run dir>/manifest.json`) and its owner
//! (`<run dir>/owner`). Cleanup removes exactly what the manifest lists, nothing else.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::procs::ProcId;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const OWNER_FILE: &str = "owner";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub run_id: String,
    /// `<cgroup2 mount>/ambit-<run id>`: every cgroup of the run is inside it.
    pub cgroup_root: PathBuf,
    /// Network namespace names (`/run/netns/<name>`), all starting with `ambit-<run id>-`.
    pub netns: Vec<String>,
    /// Cgroup directories, in creation order (removed deepest first).
    pub cgroups: Vec<PathBuf>,
    /// Mount points (bpffs) inside the run dir.
    pub mounts: Vec<PathBuf>,
    /// Processes spawned by the run and not yet reaped.
    pub processes: Vec<ProcId>,
}

impl Manifest {
    pub fn load(run_dir: &Path) -> anyhow::Result<Self> {
        let path = run_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, run_dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("serialising the manifest")?;
        write_atomic(&run_dir.join(MANIFEST_FILE), text.as_bytes())
    }
}

/// Writes `path` via a temporary file in the same directory and a rename, so readers see the old
/// or the new content, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().context("write_atomic needs a file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(content)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Reads a run's owner file.
pub fn read_owner(run_dir: &Path) -> Option<ProcId> {
    ProcId::parse(&std::fs::read_to_string(run_dir.join(OWNER_FILE)).ok()?)
}
