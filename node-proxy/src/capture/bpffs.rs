//! The node proxy's own bpffs and the layout of its pins:
//!
//! ```text
//! <bpffs>/ambit/v<LAYOUT_VERSION>/maps/<MAP>            every map (aya pins by name)
//! <bpffs>/ambit/v<LAYOUT_VERSION>/links/<program>       cgroup links at the capture root
//! <bpffs>/ambit/v<LAYOUT_VERSION>/links/netns/<pod uid> one sk_lookup link per enrolled pod
//! ```
//! Pins are what make capture outlive the process: with them a dead proxy means refused
//! connections (fail closed); without them traffic would silently bypass the mesh.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct PinLayout {
    pub(crate) root: PathBuf,
    pub(crate) maps: PathBuf,
    pub(crate) links: PathBuf,
    pub(crate) netns_links: PathBuf,
}

impl PinLayout {
    pub(crate) fn new(bpffs: &Path) -> Self {
        let root = bpffs.join("ambit").join(format!("v{}", ambit_ebpf_types::LAYOUT_VERSION));
        Self { maps: root.join("maps"), links: root.join("links"), netns_links: root.join("links").join("netns"), root }
    }

    pub(crate) fn create_dirs(&self) -> io::Result<()> {
        for dir in [&self.maps, &self.links, &self.netns_links] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    pub(crate) fn cgroup_link(&self, program: &str) -> PathBuf {
        self.links.join(program)
    }

    pub(crate) fn netns_link(&self, pod_uid: &str) -> PathBuf {
        self.netns_links.join(pod_uid)
    }

    /// Pod uids that have a pinned sk_lookup link.
    pub(crate) fn pinned_netns_links(&self) -> io::Result<Vec<String>> {
        let mut uids = Vec::new();
        for entry in std::fs::read_dir(&self.netns_links)? {
            uids.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(uids)
    }
}

pub(crate) fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes sure `path` is a bpffs, mounting one there if it is not (bpffs is not mounted on every
/// host, and each node proxy in the local harness has its own). Returns whether it mounted.
pub(crate) fn ensure_mounted(path: &Path) -> io::Result<bool> {
    std::fs::create_dir_all(path)?;
    if is_bpffs(path)? {
        return Ok(false);
    }
    let target = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid C strings; "bpf" takes no mount data.
    let rc = unsafe { libc::mount(c"bpffs".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}
