//! Logging for Ambit's binaries: one `--log` filter (`tracing` directives) and one
//! `--log-format`, the same in every binary, to stderr. Release builds print at most `debug`:
//! `trace` events and spans are compiled out (the workspace enables `tracing`'s
//! `release_max_level_debug`; h2's per-frame ones cost CPU even when filtered out).
//!
//! Access records (the `access` target: one line per request or connection) are gathered in a
//! buffer that a `log-flush` thread writes out at least once a second and as soon as 64 KiB
//! have gathered, as Envoy writes its access log files: the proxies' worker threads never make a
//! write(2) for them (one per request was a few percent of the waypoint's CPU) and never wait on
//! a slow stderr. If stderr stalls and 8 MiB pile up, further access lines are dropped and
//! counted, and the count is logged once writing resumes. Every other event is written at once,
//! after the access lines buffered before it, so lines keep their order. [`flush`] writes what is
//! buffered (the binaries call it before they exit; a panic does too). The data path's one line
//! per request can skip the `tracing` event and format itself into the batch
//! ([`access_line`]). Colours only when stderr is a terminal (never in a log file).

pub mod access_line;

use std::{
    io::{IsTerminal, Write},
    sync::{
        Condvar, Mutex, Once, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tracing_subscriber::fmt::MakeWriter;

/// The target whose events are buffered.
pub const ACCESS_TARGET: &str = "access";
/// Buffered access lines are written at least this often...
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// ...and as soon as this much has gathered.
const BUFFER_LIMIT: usize = 64 * 1024;
/// Past this much unwritten (stderr stalled), access lines are dropped.
const BUFFER_CAP: usize = 8 * 1024 * 1024;

/// `--log-format`: lines for people, or one JSON object per event for collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: events matching `filter` (e.g. `info,access=info`) go to
/// stderr in `format`, access records in batches.
pub fn init(filter: &str, format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(&STDERR)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    // The filter is fixed from here on: decide once whether access lines pass it.
    let _ = access_line::ENABLED.set(tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO));
    static FLUSHER: Once = Once::new();
    FLUSHER.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
        let spawned = std::thread::Builder::new().name("log-flush".into()).spawn(|| {
            loop {
                STDERR.wait_for_batch(FLUSH_INTERVAL);
                flush();
            }
        });
        if let Err(e) = spawned {
            eprintln!("cannot start the log flusher thread ({e}); access lines are written one by one");
            STDERR.unbuffered.store(true, Ordering::Relaxed);
        }
    });
}

/// The format [`init`] was given (text until then).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// Writes the buffered access lines now.
pub fn flush() {
    STDERR.flush_to(|| std::io::stderr().lock());
}

static STDERR: BatchedWriter = BatchedWriter::new();

/// Stderr, with access lines gathered in a buffer.
struct BatchedWriter {
    buffer: Mutex<Vec<u8>>,
    /// Signalled when the buffer reaches [`BUFFER_LIMIT`].
    batch_ready: Condvar,
    /// Held while writing, so batches and other lines reach stderr in the order they were taken.
    writing: Mutex<()>,
    /// Access lines dropped because stderr did not keep up.
    dropped: AtomicU64,
    /// Set when no flusher runs: nothing may sit in the buffer.
    unbuffered: AtomicBool,
}

impl BatchedWriter {
    const fn new() -> Self {
        Self {
            buffer: Mutex::new(Vec::new()),
            batch_ready: Condvar::new(),
            writing: Mutex::new(()),
            dropped: AtomicU64::new(0),
            unbuffered: AtomicBool::new(false),
        }
    }

    /// Writes what is buffered (and a note of dropped lines) to `out`.
    fn flush_to<W: Write>(&self, out: impl FnOnce() -> W) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if batch.is_empty() && dropped == 0 {
            return;
        }
        let mut out = out();
        // Nowhere to report a failed write to stderr; the lines are lost either way.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(out, "WARN ambit::logging: {dropped} access lines dropped: stderr did not keep up");
        }
    }

    /// Waits until a batch is ready or `timeout` has passed.
    fn wait_for_batch(&self, timeout: Duration) {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() < BUFFER_LIMIT {
            let _ = self.batch_ready.wait_timeout(buffer, timeout);
        }
    }

    /// Appends an access line (never writes, unless no flusher runs).
    fn append<W: Write>(&self, line: &[u8], out: impl FnOnce() -> W) {
        {
            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.len() + line.len() > BUFFER_CAP {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            buffer.extend_from_slice(line);
            if buffer.len() >= BUFFER_LIMIT {
                self.batch_ready.notify_one();
            }
        }
        if self.unbuffered.load(Ordering::Relaxed) {
            self.flush_to(out);
        }
    }

    /// Writes an event at once, after whatever is buffered.
    fn write_now<W: Write>(&self, line: &[u8], out: impl FnOnce() -> W) -> std::io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = out();
        let _ = out.write_all(&batch);
        out.write_all(line)
    }
}

/// One event's writer: tracing formats the event, then writes it whole with one `write_all`.
pub struct EventWriter {
    access: bool,
}

impl Write for EventWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_all(line)?;
        Ok(line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        let stderr = || std::io::stderr().lock();
        if self.access {
            STDERR.append(line, stderr);
            Ok(())
        } else {
            STDERR.write_now(line, stderr)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for &'static BatchedWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter { access: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        EventWriter { access: meta.target() == ACCESS_TARGET && *meta.level() >= tracing::Level::INFO }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_wait_for_a_batch_and_other_lines_flush_them_first() {
        let writer = BatchedWriter::new();
        let mut out = Vec::new();
        writer.append(b"access 1\n", || &mut out);
        writer.append(b"access 2\n", || &mut out);
        assert!(out.is_empty(), "buffered");
        writer.write_now(b"WARN something\n", || &mut out).unwrap();
        assert_eq!(out, b"access 1\naccess 2\nWARN something\n", "in order");
        writer.append(b"access 3\n", || &mut out);
        writer.flush_to(|| &mut out);
        assert!(out.ends_with(b"WARN something\naccess 3\n"));
        writer.flush_to(|| &mut out);
        assert!(out.ends_with(b"access 3\n"), "nothing twice");
    }

    #[test]
    fn a_full_batch_wakes_the_flusher_and_appenders_never_write() {
        let writer = std::sync::Arc::new(BatchedWriter::new());
        let line = vec![b'x'; 1000];
        let mut never = Vec::new();
        for _ in 0..BUFFER_LIMIT / 1000 + 1 {
            writer.append(&line, || &mut never);
        }
        assert!(never.is_empty(), "appending never writes");
        // A batch is ready: the flusher's wait returns at once rather than after its interval.
        let started = std::time::Instant::now();
        writer.wait_for_batch(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(60));
        let mut out = Vec::new();
        writer.flush_to(|| &mut out);
        assert_eq!(out.len(), (BUFFER_LIMIT / 1000 + 1) * 1000);
    }

    #[test]
    fn when_stderr_stalls_lines_past_the_cap_are_dropped_and_counted() {
        let writer = BatchedWriter::new();
        let line = vec![b'x'; 1024 * 1024];
        let mut never = Vec::new();
        for _ in 0..10 {
            writer.append(&line, || &mut never);
        }
        let mut out = Vec::new();
        writer.flush_to(|| &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'x').count(), BUFFER_CAP, "8 of 10 kept");
        let text = String::from_utf8_lossy(&out[BUFFER_CAP..]).into_owned();
        assert_eq!(text, "WARN ambit::logging: 2 access lines dropped: stderr did not keep up\n");
    }

    #[test]
    fn only_the_access_target_at_info_or_below_is_batched() {
        use tracing::{Level, callsite::Identifier, field::FieldSet, metadata::Kind};
        struct Callsite;
        impl tracing::callsite::Callsite for Callsite {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                unreachable!()
            }
        }
        static CALLSITE: Callsite = Callsite;
        let meta = |target, level| {
            tracing::Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CALLSITE)),
                Kind::EVENT,
            )
        };
        let make = |target, level| (&STDERR).make_writer_for(&meta(target, level)).access;
        assert!(make(ACCESS_TARGET, Level::INFO));
        assert!(make(ACCESS_TARGET, Level::DEBUG), "DEBUG is below INFO: batched too");
        assert!(!make(ACCESS_TARGET, Level::WARN), "a warning is written at once");
        assert!(!make("ambit_waypoint::proxy", Level::INFO));
    }
}
