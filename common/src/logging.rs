//! Logging for Ambit's binaries: one `--log` filter (`tracing` directives) and one
//! `--log-format`, the same in every binary, to stderr.
//!
//! Access records (the `access` target: one line per request or connection) are buffered and
//! written in batches, at least once a second and whenever 64 KiB have gathered, as Envoy writes
//! its access log files: a busy proxy would otherwise make a write(2) per request, a few percent
//! of its CPU. Every other event is written at once, after the access lines buffered before it,
//! so the order of lines is kept. [`flush`] writes what is buffered (the binaries call it before
//! they exit; a panic does too).

use std::{
    io::Write,
    sync::{Mutex, Once},
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
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(&STDERR);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    static FLUSHER: Once = Once::new();
    FLUSHER.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
        let spawned = std::thread::Builder::new().name("log-flush".into()).spawn(|| {
            loop {
                std::thread::sleep(FLUSH_INTERVAL);
                flush();
            }
        });
        if let Err(e) = spawned {
            eprintln!("cannot start the log flusher thread ({e}); access lines are written one by one");
            STDERR.unbuffered.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

/// Writes the buffered access lines now.
pub fn flush() {
    STDERR.flush_to(&mut std::io::stderr().lock());
}

static STDERR: BatchedWriter = BatchedWriter::new();

/// Stderr, with access lines gathered in a buffer.
struct BatchedWriter {
    buffer: Mutex<Vec<u8>>,
    /// Set when no flusher runs: nothing may sit in the buffer.
    unbuffered: std::sync::atomic::AtomicBool,
}

impl BatchedWriter {
    const fn new() -> Self {
        Self { buffer: Mutex::new(Vec::new()), unbuffered: std::sync::atomic::AtomicBool::new(false) }
    }

    fn flush_to(&self, out: &mut impl Write) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if !buffer.is_empty() {
            // Nowhere to report a failed write to stderr; the lines are dropped either way.
            let _ = out.write_all(&buffer);
            buffer.clear();
        }
    }

    /// Appends an access line; writes the batch out once it is large enough.
    fn append(&self, line: &[u8], out: &mut impl Write) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(line);
        if buffer.len() >= BUFFER_LIMIT || self.unbuffered.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = out.write_all(&buffer);
            buffer.clear();
        }
    }

    /// Writes an event at once, after whatever is buffered.
    fn write_now(&self, line: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if !buffer.is_empty() {
            let _ = out.write_all(&buffer);
            buffer.clear();
        }
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
        let mut stderr = std::io::stderr().lock();
        if self.access {
            STDERR.append(line, &mut stderr);
            Ok(())
        } else {
            STDERR.write_now(line, &mut stderr)
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
        writer.append(b"access 1\n", &mut out);
        writer.append(b"access 2\n", &mut out);
        assert!(out.is_empty(), "buffered");
        writer.write_now(b"WARN something\n", &mut out).unwrap();
        assert_eq!(out, b"access 1\naccess 2\nWARN something\n", "in order");
        writer.append(b"access 3\n", &mut out);
        writer.flush_to(&mut out);
        assert!(out.ends_with(b"WARN something\naccess 3\n"));
        writer.flush_to(&mut out);
        assert!(out.ends_with(b"access 3\n"), "nothing twice");
    }

    #[test]
    fn a_full_buffer_is_written_at_once() {
        let writer = BatchedWriter::new();
        let mut out = Vec::new();
        let line = vec![b'x'; 1000];
        for _ in 0..BUFFER_LIMIT / 1000 {
            writer.append(&line, &mut out);
        }
        assert!(out.is_empty());
        writer.append(&line, &mut out);
        assert_eq!(out.len(), (BUFFER_LIMIT / 1000 + 1) * 1000);
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
