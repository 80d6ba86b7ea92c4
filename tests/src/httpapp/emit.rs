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
