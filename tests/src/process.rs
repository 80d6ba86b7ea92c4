//! Processes the run spawns inside a pod (or node): moved into a cgroup, then into a network
//! namespace, between fork and exec. Tracked by PID in the manifest and killed when dropped.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io,
    os::{
        fd::{AsFd, AsRawFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus},
    sync::Arc,
    time::{Duration, Instant},
};

use ambit_common::netns::Netns;
use anyhow::{Context, bail};

use crate::{procs::ProcId, run::Run};

/// Where a process runs: a cgroup (entered first) and a network namespace.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub netns: &'a Netns,
    pub cgroup: &'a Path,
}

/// The run's children, by PID; reaped ones keep their exit status.
#[derive(Default)]
pub(crate) struct Processes {
    children: BTreeMap<u32, Child>,
    exited: BTreeMap<u32, ExitStatus>,
}

impl Processes {
    fn try_wait(&mut self, pid: u32) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.exited.get(&pid) {
            return Ok(Some(*status));
        }
        let child = self
            .children
            .get_mut(&pid)
            .ok_or_else(|| io::Error::other(format!("pid {pid} is not a process of this run")))?;
        let status = child.try_wait()?;
        if let Some(status) = status {
            self.children.remove(&pid);
            self.exited.insert(pid, status);
        }
        Ok(status)
    }

    /// SIGKILL + waitpid. The exit status (also of an earlier exit); None for an unknown PID.
    fn kill(&mut self, pid: u32) -> Option<ExitStatus> {
        if let Some(status) = self.exited.get(&pid) {
            return Some(*status);
        }
        let mut child = self.children.remove(&pid)?;
        let _ = child.kill();
        let status = child.wait().ok()?;
        self.exited.insert(pid, status);
        Some(status)
    }

    /// Kills and reaps every child; returns their PIDs.
    pub(crate) fn kill_all(&mut self) -> Vec<u32> {
        let pids: Vec<u32> = self.children.keys().copied().collect();
        for &pid in &pids {
            self.kill(pid);
        }
        pids
    }
}

/// What [`Run::spawn_in`] hands back: the guard plus the pipes the command asked for.
pub struct Spawned {
    pub guard: ChildGuard,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Run {
    /// Spawns `cmd` in `place`: the child writes itself into the cgroup's `cgroup.procs`, then
    /// `setns`es into the namespace (not `ip netns exec`, which remounts sysfs and hides cgroups).
    pub fn spawn_in(self: &Arc<Self>, mut cmd: Command, place: Place<'_>) -> anyhow::Result<Spawned> {
        let procs_path = place.cgroup.join("cgroup.procs");
        let procs = OpenOptions::new()
            .write(true)
            .open(&procs_path)
            .with_context(|| format!("opening {}", procs_path.display()))?;
        let (procs_fd, netns_fd) = (procs.as_raw_fd(), place.netns.as_fd().as_raw_fd());
        // SAFETY: the closure only makes async-signal-safe syscalls (write, setns) on fds that stay
        // open until `spawn` returns (`procs` and `place.netns` outlive it); no allocation.
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setns(netns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut state = self.lock();
        if state.closed {
            bail!("run {} is already cleaned up", self.id());
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "spawning {program} in cgroup {} and netns {}",
                place.cgroup.display(),
                place.netns.path().display()
            )
        })?;
        drop(procs);
        let pid = child.id();
        let id = ProcId::of(pid).unwrap_or(ProcId { pid, start_time: 0 });
        state.manifest.processes.push(id);
        let saved = state.manifest.save(self.dir());
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        state.processes.children.insert(pid, child);
        drop(state);
        let guard = ChildGuard { run: self.clone(), pid };
        saved?;
        Ok(Spawned { guard, stdin, stdout, stderr })
    }

    /// The exit status of one of the run's processes, if it has exited (reaping it).
    pub fn try_wait(&self, pid: u32) -> anyhow::Result<Option<ExitStatus>> {
        let mut state = self.lock();
        let status = state.processes.try_wait(pid)?;
        if status.is_some() && state.manifest.processes.iter().any(|p| p.pid == pid) {
            state.manifest.processes.retain(|p| p.pid != pid);
            state.manifest.save(self.dir())?;
        }
        Ok(status)
    }

    /// SIGKILLs and reaps one of the run's processes; its exit status (None for an unknown PID).
    pub fn kill(&self, pid: u32) -> Option<ExitStatus> {
        let mut state = self.lock();
        let status = state.processes.kill(pid);
        if state.manifest.processes.iter().any(|p| p.pid == pid) {
            state.manifest.processes.retain(|p| p.pid != pid);
            if !state.closed {
                let _ = state.manifest.save(self.dir());
            }
        }
        status
    }
}

/// A process of the run; SIGKILLed and reaped when dropped.
pub struct ChildGuard {
    run: Arc<Run>,
    pid: u32,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&self) -> anyhow::Result<Option<ExitStatus>> {
        self.run.try_wait(self.pid)
    }

    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; it keeps running if it does not.
    pub fn wait_timeout(&self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL and reap (if still running); returns the exit status.
    pub fn kill(&self) -> Option<ExitStatus> {
        self.run.kill(self.pid)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.run.kill(self.pid);
    }
}
