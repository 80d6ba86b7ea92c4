//! User-space side of the eBPF capture: loads the programs, keeps maps and links pinned in the
//! node proxy's bpffs, adopts what a previous instance pinned, and owns every map operation.
//!
//! Restart semantics: maps are reused from their pins and each pinned link gets the freshly loaded
//! program swapped in with `BPF_LINK_UPDATE`, so a restart neither stacks duplicate programs nor
//! opens a window in which enrolled pods bypass the proxy.

mod bpffs;
mod maps;
pub(crate) mod sys;

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use ambit_ebpf_types::{Counter, program_names};
use aya::{
    Ebpf, EbpfLoader,
    programs::{CgroupAttachMode, CgroupSockAddr, SkLookup, SockOps, links::FdLink},
};
pub(crate) use bpffs::PinLayout;
use maps::CaptureMaps;
pub(crate) use maps::MapSizes;
use serde::Serialize;

use crate::netns::Netns;

/// The eBPF object, compiled from `ebpf/programs` by this crate's build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ambit-ebpf"));

/// Attach types, as numbered by the kernel's `enum bpf_attach_type`.
mod attach_type {
    use aya_obj::generated::bpf_attach_type as t;
    pub(super) const INET4_CONNECT: u32 = t::BPF_CGROUP_INET4_CONNECT as u32;
    pub(super) const INET6_CONNECT: u32 = t::BPF_CGROUP_INET6_CONNECT as u32;
    pub(super) const SOCK_OPS: u32 = t::BPF_CGROUP_SOCK_OPS as u32;
    pub(super) const INET4_GETPEERNAME: u32 = t::BPF_CGROUP_INET4_GETPEERNAME as u32;
    pub(super) const INET6_GETPEERNAME: u32 = t::BPF_CGROUP_INET6_GETPEERNAME as u32;
    pub(super) const SK_LOOKUP: u32 = t::BPF_SK_LOOKUP as u32;
}

/// The capture-root programs: (program, attach type).
const CGROUP_PROGRAMS: [(&str, u32); 5] = [
    (program_names::CONNECT4, attach_type::INET4_CONNECT),
    (program_names::CONNECT6, attach_type::INET6_CONNECT),
    (program_names::SOCK_OPS, attach_type::SOCK_OPS),
    (program_names::GETPEERNAME4, attach_type::INET4_GETPEERNAME),
    (program_names::GETPEERNAME6, attach_type::INET6_GETPEERNAME),
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum CaptureError {
    #[error(
        "this node-proxy binary was built with AYA_BUILD_SKIP=1 and carries no eBPF programs; \
         rebuild it with `cargo xtask build` (after `cargo xtask setup`)"
    )]
    NoObject,
    #[error(
        "cannot use {path} as the node proxy's bpffs: {source} (the node proxy needs CAP_SYS_ADMIN \
         to mount it, or mount a bpffs there beforehand: `mount -t bpf bpffs {path}`)"
    )]
    Bpffs { path: PathBuf, source: io::Error },
    #[error("cannot create pin directory {path}: {source}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error("cannot load the eBPF object: {0} (is this kernel 5.15 or newer, with BTF?)")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("eBPF program {name} is missing from the object (stale build? run `cargo xtask build`)")]
    MissingProgram { name: &'static str },
    #[error(
        "capture root cgroup {path}: {source} (it must be an existing cgroup v2 directory that \
         contains every pod's cgroup, e.g. /sys/fs/cgroup/kubepods.slice)"
    )]
    CgroupRoot { path: PathBuf, source: io::Error },
    #[error("pinning or adopting the link at {path}: {source}")]
    Link { path: PathBuf, source: io::Error },
    #[error("eBPF map {map}: {op}: {source}")]
    Map { map: &'static str, op: &'static str, source: aya::maps::MapError },
}

/// How a link came to be in place at start-up: found pinned (and its program swapped for ours),
/// or attached fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LinkOrigin {
    Adopted,
    Attached,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct LinkState {
    pub(crate) program: &'static str,
    pub(crate) pin: PathBuf,
    pub(crate) link_id: u32,
    pub(crate) program_id: u32,
    pub(crate) origin: LinkOrigin,
}

/// An enrolled pod as capture sees it.
pub(crate) struct PodCapture<'a> {
    pub(crate) uid: &'a str,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: &'a Netns,
    pub(crate) netns_cookie: u64,
    pub(crate) plaintext_listener: &'a TcpListener,
    pub(crate) hbone_listener: &'a TcpListener,
}

pub(crate) struct Capture {
    ebpf: Mutex<Ebpf>,
    maps: CaptureMaps,
    pins: PinLayout,
    cgroup_root: PathBuf,
    cgroup_links: Vec<LinkState>,
}

impl Capture {
    /// Loads the programs, mounts/uses the bpffs at `bpffs`, and attaches (or adopts) the
    /// capture-root programs on `cgroup_root`.
    pub(crate) fn load(bpffs: &Path, cgroup_root: &Path) -> Result<Self, CaptureError> {
        if OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        bpffs::ensure_mounted(bpffs).map_err(|source| CaptureError::Bpffs { path: bpffs.to_owned(), source })?;
        let pins = PinLayout::new(bpffs);
        pins.create_dirs().map_err(|source| CaptureError::PinDir { path: pins.root.clone(), source })?;

        let mut ebpf =
            EbpfLoader::new().default_map_pin_directory(&pins.maps).load(OBJECT).map_err(CaptureError::Load)?;
        let maps = CaptureMaps::take(&mut ebpf)?;
        for (name, _) in CGROUP_PROGRAMS {
            load_program(&mut ebpf, name)?;
        }
        load_program(&mut ebpf, program_names::SK_LOOKUP)?;

        let cgroup = File::open(cgroup_root)
            .map_err(|source| CaptureError::CgroupRoot { path: cgroup_root.to_owned(), source })?;
        let cgroup_id = cgroup
            .metadata()
            .map_err(|source| CaptureError::CgroupRoot { path: cgroup_root.to_owned(), source })?
            .ino();
        let mut cgroup_links = Vec::new();
        for (name, attach_type) in CGROUP_PROGRAMS {
            let target = sys::LinkTarget::Cgroup { cgroup_id, attach_type };
            let pin = pins.cgroup_link(name);
            let state = attach_or_adopt(&mut ebpf, name, &pin, target, |ebpf| attach_cgroup(ebpf, name, &cgroup))?;
            cgroup_links.push(state);
        }
        Ok(Self { ebpf: Mutex::new(ebpf), maps, pins, cgroup_root: cgroup_root.to_owned(), cgroup_links })
    }

    pub(crate) fn pins(&self) -> &PinLayout {
        &self.pins
    }

    pub(crate) fn cgroup_links(&self) -> &[LinkState] {
        &self.cgroup_links
    }

    /// Turns capture on for a pod: listeners first, then inbound (sk_lookup), then outbound (the
    /// netns-cookie entry), so no connection is ever steered to something that is not there yet.
    pub(crate) fn enroll(&self, pod: &PodCapture<'_>) -> Result<LinkState, CaptureError> {
        self.maps.insert_listeners(pod.ip, pod.plaintext_listener, pod.hbone_listener)?;
        let pin = self.pins.netns_link(pod.uid);
        let target =
            sys::LinkTarget::Netns { netns_ino: pod.netns.inode() as u32, attach_type: attach_type::SK_LOOKUP };
        let link = {
            let mut ebpf = self.ebpf.lock().expect("capture lock");
            attach_or_adopt(&mut ebpf, program_names::SK_LOOKUP, &pin, target, |ebpf| {
                let program: &mut SkLookup = program_mut(ebpf, program_names::SK_LOOKUP)?;
                let id = program.attach(pod.netns.as_fd()).map_err(program_err(program_names::SK_LOOKUP))?;
                Ok(program.take_link(id).map_err(program_err(program_names::SK_LOOKUP))?.into())
            })?
        };
        self.maps.insert_pod(pod.netns_cookie, pod.ip)?;
        Ok(link)
    }

    /// Stops capturing the pod's new outbound connections (step one of unenrolling).
    pub(crate) fn stop_outbound(&self, netns_cookie: u64) -> Result<(), CaptureError> {
        self.maps.remove_pod(netns_cookie)
    }

    /// Stops capturing the pod's inbound connections and forgets its listeners (step two).
    pub(crate) fn stop_inbound(&self, uid: &str, ip: Ipv4Addr) -> Result<(), CaptureError> {
        let pin = self.pins.netns_link(uid);
        match std::fs::remove_file(&pin) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(CaptureError::Link { path: pin, source }),
        }
        self.maps.remove_listeners(ip)
    }

    /// Removes what a previous instance left for pods that are no longer enrolled.
    pub(crate) fn prune(&self, enrolled_cookies: &[u64], enrolled_uids: &[&str]) -> Result<PruneReport, CaptureError> {
        let mut report = PruneReport::default();
        for cookie in self.maps.pod_cookies() {
            if !enrolled_cookies.contains(&cookie) {
                self.maps.remove_pod(cookie)?;
                report.pod_entries += 1;
            }
        }
        let pinned = self
            .pins
            .pinned_netns_links()
            .map_err(|source| CaptureError::Link { path: self.pins.netns_links.clone(), source })?;
        for uid in pinned {
            if !enrolled_uids.contains(&uid.as_str()) {
                let pin = self.pins.netns_link(&uid);
                std::fs::remove_file(&pin).map_err(|source| CaptureError::Link { path: pin, source })?;
                report.netns_links += 1;
            }
        }
        // Entries for relays of a previous instance: those connections died with it.
        report.inbound_peers = self.maps.clear_inbound_peers();
        Ok(report)
    }

    /// The original destination of a captured connection, by its client address (from accept).
    pub(crate) fn take_original_destination(&self, client: SocketAddr) -> Option<SocketAddr> {
        self.maps.take_original_destination(client)
    }

    /// Lets the app's `getpeername` show `client` for the proxy's in-pod socket at `proxy_local`.
    pub(crate) fn register_inbound_peer(
        &self,
        proxy_local: SocketAddr,
        client: SocketAddr,
    ) -> Result<(), CaptureError> {
        self.maps.insert_inbound_peer(proxy_local, client)
    }

    pub(crate) fn forget_inbound_peer(&self, proxy_local: SocketAddr) {
        self.maps.remove_inbound_peer(proxy_local);
    }

    pub(crate) fn counters(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL.iter().map(|c| (c.name(), self.maps.counter(*c))).collect()
    }

    pub(crate) fn map_sizes(&self) -> MapSizes {
        self.maps.sizes()
    }

    /// The kernel's view of what is attached at the capture root: program ids per hook.
    pub(crate) fn attached_at_root(&self) -> io::Result<Vec<(&'static str, Vec<u32>)>> {
        let cgroup = File::open(&self.cgroup_root)?;
        CGROUP_PROGRAMS
            .iter()
            .map(|(name, attach_type)| Ok((*name, sys::prog_query(cgroup.as_fd(), *attach_type)?)))
            .collect()
    }

    /// Program ids attached as sk_lookup in a pod's namespace.
    pub(crate) fn attached_in_netns(netns: &Netns) -> io::Result<Vec<u32>> {
        sys::prog_query(netns.as_fd(), attach_type::SK_LOOKUP)
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct PruneReport {
    pub(crate) pod_entries: usize,
    pub(crate) netns_links: usize,
    pub(crate) inbound_peers: usize,
}

fn program_err(name: &'static str) -> impl Fn(aya::programs::ProgramError) -> CaptureError {
    move |source| CaptureError::Program { name, source }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(CaptureError::MissingProgram { name })?;
    program.try_into().map_err(program_err(name))
}

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), CaptureError> {
    let program = ebpf.program_mut(name).ok_or(CaptureError::MissingProgram { name })?;
    match program {
        aya::programs::Program::CgroupSockAddr(p) => p.load(),
        aya::programs::Program::SockOps(p) => p.load(),
        aya::programs::Program::SkLookup(p) => p.load(),
        _ => return Err(CaptureError::MissingProgram { name }),
    }
    .map_err(program_err(name))
}

fn attach_cgroup(ebpf: &mut Ebpf, name: &'static str, cgroup: &File) -> Result<FdLink, CaptureError> {
    // `Single` is what works here: `AllowMultiple` fails with EINVAL for links on this kernel,
    // and links stack anyway.
    if name == program_names::SOCK_OPS {
        let program: &mut SockOps = program_mut(ebpf, name)?;
        let id = program.attach(cgroup, CgroupAttachMode::Single).map_err(program_err(name))?;
        let link = program.take_link(id).map_err(program_err(name))?;
        return FdLink::try_from(link)
            .map_err(|e| CaptureError::Link { path: PathBuf::from(name), source: io::Error::other(e.to_string()) });
    }
    let program: &mut CgroupSockAddr = program_mut(ebpf, name)?;
    let id = program.attach(cgroup, CgroupAttachMode::Single).map_err(program_err(name))?;
    let link = program.take_link(id).map_err(program_err(name))?;
    FdLink::try_from(link)
        .map_err(|e| CaptureError::Link { path: PathBuf::from(name), source: io::Error::other(e.to_string()) })
}

/// If `pin` holds a link to `target`, swap our freshly loaded program into it; otherwise attach
/// with `attach` and pin the new link (replacing a pin that points elsewhere).
fn attach_or_adopt(
    ebpf: &mut Ebpf,
    program: &'static str,
    pin: &Path,
    target: sys::LinkTarget,
    attach: impl FnOnce(&mut Ebpf) -> Result<FdLink, CaptureError>,
) -> Result<LinkState, CaptureError> {
    let link_err = |source| CaptureError::Link { path: pin.to_owned(), source };
    let prog_fd = {
        let prog = ebpf.program(program).ok_or(CaptureError::MissingProgram { name: program })?;
        prog.fd().map_err(program_err(program))?.try_clone().map_err(link_err)?
    };
    match sys::obj_get(pin) {
        Ok(link) => {
            let info = sys::link_info(link.as_fd()).map_err(link_err)?;
            if info.target == target {
                sys::link_update(link.as_fd(), prog_fd.as_fd()).map_err(link_err)?;
                let info = sys::link_info(link.as_fd()).map_err(link_err)?;
                return Ok(LinkState {
                    program,
                    pin: pin.to_owned(),
                    link_id: info.id,
                    program_id: info.prog_id,
                    origin: LinkOrigin::Adopted,
                });
            }
            tracing::warn!(pin = %pin.display(), found = ?info.target, wanted = ?target,
                "pinned link points elsewhere; replacing it");
            std::fs::remove_file(pin).map_err(link_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(link_err(e)),
    }
    let link = attach(ebpf)?;
    let info = link.info().map_err(|e| link_err(io::Error::other(e.to_string())))?;
    link.pin(pin).map_err(|e| link_err(io::Error::other(e.to_string())))?;
    Ok(LinkState {
        program,
        pin: pin.to_owned(),
        link_id: info.id(),
        program_id: info.program_id(),
        origin: LinkOrigin::Attached,
    })
}
