//! JSON-lines output: one event per line on stdout, flushed at once (tests read it live).

use std::io::Write;

use serde_json::Value;

/// Prints one event as a line and flushes. Output errors are ignored: the reader went away.
pub(super) fn emit(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, event);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The error kinds tests match on.
pub(super) fn error_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => "reset",
        K::TimedOut | K::WouldBlock => "timeout",
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => "unreachable",
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => "unreachable",
            Some(libc::ECONNRESET | libc::EPIPE) => "reset",
            _ => "other",
        },
    }
}

/// `{"event":"error","kind":...,"message":...}` for an IO error (plus what was being done).
pub(super) fn io_error_event(what: &str, e: &std::io::Error) -> Value {
    serde_json::json!({
        "event": "error",
        "kind": error_kind(e),
        "message": format!("{what}: {e}"),
    })
}
