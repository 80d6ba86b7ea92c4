//! A long-running Ambit process of the run (a node proxy, the control plane): started in a
//! network namespace and cgroup, its output appended to a log file, readiness polled on its admin
//! API, killed by PID on request or when the run ends.

use std::{
    fs::OpenOptions,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ambit_common::netns::Netns;
use anyhow::{Context, bail};
use serde_json::Value;

use crate::{
    http,
    process::{ChildGuard, Place},
    run::Run,
};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Daemon {
    /// For messages: e.g. "node-0 node-proxy".
    label: String,
    run: Arc<Run>,
    netns: Netns,
    cgroup: PathBuf,
    log: PathBuf,
    admin: SocketAddr,
    child: Mutex<Option<ChildGuard>>,
}

impl Daemon {
    pub(crate) fn new(
        label: String,
        run: Arc<Run>,
        netns: &Netns,
        cgroup: PathBuf,
        log: PathBuf,
        admin: SocketAddr,
    ) -> anyhow::Result<Self> {
        let netns = Netns::open(netns.path()).with_context(|| format!("{label}: opening its network namespace"))?;
        Ok(Self { label, run, netns, cgroup, log, admin, child: Mutex::new(None) })
    }

    fn slot(&self) -> MutexGuard<'_, Option<ChildGuard>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `binary args…` without waiting for it to be ready.
    pub(crate) fn spawn(&self, binary: &Path, args: &[String]) -> anyhow::Result<()> {
        let mut slot = self.slot();
        if let Some(running) = slot.as_ref().filter(|g| g.is_running()) {
            bail!("{}: already running (pid {})", self.label, running.pid());
        }
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).context("opening the log")?;
        writeln!(log, "===== ambit harness: starting {} for {} =====", binary.display(), self.label)?;
        let mut cmd = Command::new(binary);
        // The log is a file: no colour codes.
        cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let spawned = self.run.spawn_in(cmd, Place { netns: &self.netns, cgroup: &self.cgroup })?;
        *slot = Some(spawned.guard);
        Ok(())
    }

    /// Polls `/ready` until it answers 200; fails early (with the log tail) if the process exits.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if let Some(status) = self.exit_status() {
                bail!("{} exited with {status} before it was ready\n{}", self.label, self.log_tail_block(40));
            }
            match http::get(&self.netns, self.admin, "/ready", Duration::from_secs(1)) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready after {timeout:?} (last /ready: {last})\n{}",
                    self.label,
                    self.log_tail_block(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        self.slot().as_ref().and_then(|g| g.try_wait().ok().flatten())
    }

    /// SIGKILL and reap; the exit status, or None if it was never started.
    pub(crate) fn kill(&self) -> Option<ExitStatus> {
        self.slot().take().and_then(|g| g.kill())
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.slot().as_ref().filter(|g| g.is_running()).map(ChildGuard::pid)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn log_tail_block(&self, lines: usize) -> String {
        format!(
            "----- {} log, last {lines} lines ({}) -----\n{}\n----- end of {} log -----",
            self.label,
            self.log.display(),
            self.log_tail(lines),
            self.label
        )
    }

    /// `GET path` on the admin API; the status and raw body.
    pub(crate) fn admin_get_raw(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let (status, body) = http::get(&self.netns, self.admin, path, ADMIN_TIMEOUT)
            .with_context(|| format!("{}: GET {path} on its admin API {}", self.label, self.admin))?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `GET path` as JSON; a non-2xx status is an error carrying the body.
    pub(crate) fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.admin_get_raw(path)?;
        if !(200..300).contains(&status) {
            bail!("{}: GET {path} answered {status}: {}", self.label, body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("{}: GET {path}: the body is not JSON: {body}", self.label))
    }
}
