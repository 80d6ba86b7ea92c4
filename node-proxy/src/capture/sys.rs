//! The few `bpf(2)` commands aya 0.14 does not expose: fetching a pinned object's fd, swapping the
//! program behind a link (`BPF_LINK_UPDATE`, how a restarted proxy adopts its links without a
//! window where capture is off), reading a link's target, and querying a hook's attached programs
//! (the kernel's own view, used by the admin dump and tests).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_int = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_LINK_UPDATE: libc::c_int = 29;

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, correctly laid out `union bpf_attr` member for `cmd`, and we pass
    // its exact size; the kernel zero-extends shorter attrs.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr).cast::<libc::c_void>(), size_of::<T>()) };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Opens a pinned BPF object (map, program or link).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjGetAttr { pathname: path.as_ptr() as u64, ..Default::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Atomically replaces the program behind `link` with `prog`.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr =
        LinkUpdateAttr { link_fd: link.as_raw_fd() as u32, new_prog_fd: prog.as_raw_fd() as u32, ..Default::default() };
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_link_info`, enough of it for cgroup and netns links.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    target: u64,
    attach_type_cgroup: u32,
    _rest: [u32; 15],
}

const BPF_LINK_TYPE_CGROUP: u32 = 3;
const BPF_LINK_TYPE_NETNS: u32 = 5;

/// What a cgroup or netns link points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkTarget {
    Cgroup { cgroup_id: u64, attach_type: u32 },
    Netns { netns_ino: u32, attach_type: u32 },
    Other { link_type: u32 },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    pub(crate) id: u32,
    pub(crate) prog_id: u32,
    pub(crate) target: LinkTarget,
}

pub(crate) fn link_info(link: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut info = RawLinkInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: size_of::<RawLinkInfo>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let target = match info.link_type {
        BPF_LINK_TYPE_CGROUP => LinkTarget::Cgroup { cgroup_id: info.target, attach_type: info.attach_type_cgroup },
        // netns: { u32 netns_ino; u32 attach_type; } overlaid on the same 8 bytes.
        BPF_LINK_TYPE_NETNS => {
            LinkTarget::Netns { netns_ino: info.target as u32, attach_type: (info.target >> 32) as u32 }
        }
        other => LinkTarget::Other { link_type: other },
    };
    Ok(LinkInfo { id: info.id, prog_id: info.prog_id, target })
}

/// `union bpf_attr`'s `query` member, complete: the kernel writes `prog_cnt` and `revision` back,
/// so the struct must cover them.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// IDs of the programs attached to `target` (a cgroup or netns fd) for `attach_type`, as the
/// kernel sees them. Duplicates here would mean a proxy stacked programs instead of adopting.
pub(crate) fn prog_query(target: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}
