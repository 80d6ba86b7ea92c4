//! `connect-many`: N short sequential connections (`--interval-ms` apart), each sending a small payload and reading the
//! echo back; one summary event at the end.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
};

use serde_json::json;

use super::{
    args::Flags,
    dial::{Dial, dial},
    emit::{emit, error_kind},
};

pub(super) fn run(args: &[String]) -> Result<i32, String> {
    let flags = Flags::parse(args, &["to", "count", "interval-ms", "timeout-ms", "ipv6-mapped"])?;
    let interval = std::time::Duration::from_millis(flags.u64_or("interval-ms", 0)?);
    let target = Dial::from_flags(&flags)?;
    let count = flags.u64_or("count", 0)?;
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut first_error = None;
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(interval);
        }
        match one(&target, i) {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                let kind = if e.kind() == io::ErrorKind::InvalidData { "mismatch" } else { error_kind(&e) };
                *errors.entry(kind).or_default() += 1;
                first_error.get_or_insert_with(|| format!("connection {i}: {e}"));
            }
        }
    }
    emit(&json!({
        "event": "summary",
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "firstError": first_error,
    }));
    Ok(if failed == 0 { 0 } else { 1 })
}

fn one(target: &Dial, i: u64) -> io::Result<()> {
    let mut stream = dial(target)?;
    let payload = format!("connection {i:>8} of connect-many, echo me back please\n").into_bytes();
    stream.write_all(&payload)?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    if back != payload {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs from what was sent"));
    }
    Ok(())
}
