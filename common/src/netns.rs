//! Running code inside another network namespace, the way ztunnel's in-pod mode does: switch the
//! calling thread in (`setns`), do something synchronous (typically create a socket, which keeps
//! its namespace for life), switch back. Never hold such a switch across an `.await`.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

/// An open handle on a network namespace (keeps the namespace alive while held).
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    path: PathBuf,
    inode: u64,
}

impl Netns {
    /// Opens a namespace by path (`/run/netns/<name>`, `/proc/<pid>/ns/net`, …).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let inode = file.metadata()?.ino();
        Ok(Self { fd: file.into(), path: path.to_owned(), inode })
    }

    /// The calling thread's current namespace.
    pub fn current() -> io::Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The nsfs inode, which identifies the namespace (and is what netns BPF links report).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on this thread inside the namespace, then returns the thread to the namespace it
    /// was in. If the way back fails the process aborts: a thread silently left in another
    /// namespace would misroute everything it does afterwards.
    pub fn run<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let back = Self::current()?;
        setns(self.fd.as_fd())?;
        let result = f();
        if let Err(e) = setns(back.fd.as_fd()) {
            eprintln!("fatal: cannot return to network namespace {}: {e}", back.path.display());
            std::process::abort();
        }
        result
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn setns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid namespace fd; it affects only the calling thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_NETNS_COOKIE` (Linux 5.14+) of a socket: the id of the namespace it lives in, which is
/// what eBPF programs see through `bpf_get_netns_cookie`.
pub fn netns_cookie(socket: BorrowedFd<'_>) -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd and a correctly sized output buffer.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            std::ptr::from_mut(&mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}
