//! `ambit-testapp` and `ambit-httpapp` processes inside pods: their JSON-lines output collected
//! by reader threads, waiting for events, and runs to completion.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{
    config,
    process::{ChildGuard, Place},
    run::Run,
};

/// How long `spawn_app` waits for a server's `listening` event.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound of `run_app`.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of `run_httpapp`: past `ambit-httpapp load`'s own default `--deadline-ms` (120 s), so a
/// run cut by its deadline still gets to print its summary.
pub const HTTPAPP_RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// The test programs, binaries of this crate.
pub(crate) const TESTAPP: &str = "ambit-testapp";
pub(crate) const HTTPAPP: &str = "ambit-httpapp";

#[derive(Default)]
struct Output {
    events: Vec<Value>,
    stderr: String,
    stdout_closed: bool,
}

#[derive(Default)]
struct EventLog {
    output: Mutex<Output>,
    changed: Condvar,
}

impl EventLog {
    fn lock(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running `ambit-testapp` or `ambit-httpapp` (killed when dropped).
pub struct App {
    guard: ChildGuard,
    log: Arc<EventLog>,
    label: String,
    readers: Vec<JoinHandle<()>>,
}

/// A finished `ambit-testapp` or `ambit-httpapp`.
#[derive(Debug, Clone)]
pub struct AppOutput {
    pub events: Vec<Value>,
    pub status: ExitStatus,
    pub stderr: String,
}

impl AppOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The first event named `name` (`{"event": name, …}`).
    pub fn event(&self, name: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["event"] == name)
    }

    pub fn last(&self) -> Option<&Value> {
        self.events.last()
    }
}

/// Spawns `ambit-testapp args…` in `place`. For `serve`, waits until it is listening.
pub(crate) fn spawn(run: &Arc<Run>, place: Place<'_>, label: &str, args: &[&str]) -> anyhow::Result<App> {
    spawn_program(run, place, label, TESTAPP, args)
}

/// Spawns `program args…` (one of the test programs) in `place`. For `serve`, waits until it is
/// listening.
pub(crate) fn spawn_program(
    run: &Arc<Run>,
    place: Place<'_>,
    label: &str,
    program: &str,
    args: &[&str],
) -> anyhow::Result<App> {
    let mut cmd = Command::new(config::binary(program)?);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawned =
        run.spawn_in(cmd, place).with_context(|| format!("{label}: starting {program} {}", args.join(" ")))?;
    let log = Arc::new(EventLog::default());
    let mut readers = Vec::new();
    if let Some(stdout) = spawned.stdout {
        let log = log.clone();
        readers.push(std::thread::spawn(move || read_events(stdout, &log)));
    }
    if let Some(stderr) = spawned.stderr {
        let log = log.clone();
        readers.push(std::thread::spawn(move || read_stderr(stderr, &log)));
    }
    let app = App { guard: spawned.guard, log, label: label.to_owned(), readers };
    if args.first() == Some(&"serve") {
        app.wait_for(|e| e["event"] == "listening", LISTEN_TIMEOUT)?;
    }
    Ok(app)
}

/// Runs `ambit-testapp args…` to completion (bounded by `timeout`), whatever its exit status.
pub(crate) fn run_output(
    run: &Arc<Run>,
    place: Place<'_>,
    label: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<AppOutput> {
    spawn(run, place, label, args)?.wait(timeout)
}

/// Like [`run_output`], but an exit status other than 0 is an error (with events and stderr).
pub(crate) fn run_ok(run: &Arc<Run>, place: Place<'_>, label: &str, args: &[&str]) -> anyhow::Result<Vec<Value>> {
    run_program_ok(run, place, label, TESTAPP, args, RUN_TIMEOUT)
}

/// Runs `program args…` to completion (bounded by `timeout`); an exit status other than 0 is an
/// error (with events and stderr).
pub(crate) fn run_program_ok(
    run: &Arc<Run>,
    place: Place<'_>,
    label: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let output = spawn_program(run, place, label, program, args)?.wait(timeout)?;
    if !output.success() {
        bail!(
            "{label}: {program} {} exited with {}\nevents:\n{}\nstderr: {}",
            args.join(" "),
            output.status,
            show_events(&output.events),
            output.stderr.trim()
        );
    }
    Ok(output.events)
}

fn read_events(stdout: impl Read, log: &EventLog) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let event = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "raw", "line": line}));
        log.lock().events.push(event);
        log.changed.notify_all();
    }
    log.lock().stdout_closed = true;
    log.changed.notify_all();
}

fn read_stderr(stderr: impl Read, log: &EventLog) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let mut output = log.lock();
        output.stderr.push_str(&line);
        output.stderr.push('\n');
    }
}

fn show_events(events: &[Value]) -> String {
    let skip = events.len().saturating_sub(30);
    let mut text: Vec<String> = events[skip..].iter().map(|e| format!("  {e}")).collect();
    if skip > 0 {
        text.insert(0, format!("  … {skip} earlier events"));
    }
    if text.is_empty() { "  (none)".into() } else { text.join("\n") }
}

impl App {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Every event printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.log.lock().events.clone()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().stderr.clone()
    }

    pub fn is_running(&self) -> bool {
        self.guard.is_running()
    }

    /// The first event (from the start of the output) matching `pred`, waiting up to `timeout`.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_for_count(pred, 1, timeout).map(|mut v| v.remove(0))
    }

    /// The first `count` events matching `pred`, waiting up to `timeout` for them.
    pub fn wait_for_count(
        &self,
        pred: impl Fn(&Value) -> bool,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        let mut output = self.log.lock();
        loop {
            let found: Vec<Value> = output.events.iter().filter(|e| pred(e)).take(count).cloned().collect();
            if found.len() == count {
                return Ok(found);
            }
            let now = Instant::now();
            if output.stdout_closed || now >= deadline {
                let why = if output.stdout_closed { "the app's output ended" } else { "timed out" };
                let (events, stderr) = (show_events(&output.events), output.stderr.clone());
                drop(output);
                bail!(
                    "{}: waited {timeout:?} for {count} matching event(s), found {}: {why} (exit status: {:?})\nevents:\n{events}\nstderr: {}",
                    self.label,
                    found.len(),
                    self.guard.try_wait().ok().flatten(),
                    stderr.trim()
                );
            }
            output = self
                .log
                .changed
                .wait_timeout(output, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&self) -> Option<ExitStatus> {
        self.guard.kill()
    }

    /// Waits up to `timeout` for the app to exit (killing it if it does not) and collects its output.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<AppOutput> {
        let status = self.guard.wait_timeout(timeout)?;
        let Some(status) = status else {
            self.guard.kill();
            let events = show_events(&self.events());
            bail!(
                "{}: still running after {timeout:?}; killed it\nevents:\n{events}\nstderr: {}",
                self.label,
                self.stderr().trim()
            );
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = self.log.lock();
        Ok(AppOutput { events: output.events.clone(), status, stderr: output.stderr.clone() })
    }
}
