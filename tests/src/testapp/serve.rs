//! `serve`: a TCP server that reports what `accept()` and `getpeername()` say about each peer
//! (eBPF capture rewrites the latter), then echoes or digests the connection.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::json;

use super::{
    args::{Flags, Mode},
    emit::{emit, error_kind, io_error_event},
    stream::{BLOCK_SIZE, Digest, StreamGen},
};

#[derive(Clone, Copy)]
struct Settings {
    mode: Mode,
    reply_bytes: u64,
    seed: u64,
}

pub(super) fn run(args: &[String]) -> Result<i32, String> {
    let flags = Flags::parse(args, &["listen", "mode", "reply-bytes", "seed"])?;
    let listen = flags.addr("listen")?;
    let settings = Settings { mode: flags.mode()?, reply_bytes: flags.u64_or("reply-bytes", 0)?, seed: flags.seed()? };
    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            emit(&io_error_event(&format!("bind {listen}"), &e));
            return Ok(1);
        }
    };
    let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    emit(&json!({"event": "listening", "addr": bound, "mode": settings.mode.name()}));
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let getpeername = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("error: {e}"));
                let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("error: {e}"));
                emit(&json!({
                    "event": "accepted",
                    "peer": peer.to_string(),
                    "getpeername": getpeername,
                    "local": local,
                }));
                std::thread::spawn(move || handle(stream, &peer.to_string(), settings));
            }
            Err(e) => {
                emit(&io_error_event("accept", &e));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn handle(stream: TcpStream, peer: &str, settings: Settings) {
    let result = match settings.mode {
        Mode::Echo => echo(stream),
        Mode::Digest => digest(stream, settings),
    };
    match result {
        Ok((received, sent)) => {
            emit(&json!({"event": "closed", "peer": peer, "received": received, "sent": sent}));
        }
        Err(e) => emit(&json!({
            "event": "connError",
            "peer": peer,
            "kind": error_kind(&e),
            "message": e.to_string(),
        })),
    }
}

/// Copies everything back; on EOF shuts down the write side. Returns (received, sent).
fn echo(mut stream: TcpStream) -> std::io::Result<(u64, u64)> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok((total, total));
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Reads to EOF, answers `{"bytes":N,"digest":"…"}\n` and `reply_bytes` of the stream, closes.
fn digest(mut stream: TcpStream, settings: Settings) -> std::io::Result<(u64, u64)> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut digest = Digest::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    let line = format!("{}\n", json!({"bytes": digest.len(), "digest": digest.hex()}));
    stream.write_all(line.as_bytes())?;
    let mut generator = StreamGen::new(settings.seed);
    let mut left = settings.reply_bytes;
    while left > 0 {
        let block = generator.next_block();
        let n = (left as usize).min(block.len());
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok((digest.len(), line.len() as u64 + settings.reply_bytes))
}
