//! `connect`: one connection that sends the deterministic stream and verifies what comes back
//! (the echo, or the server's digest line plus its reply stream).

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    args::{Flags, Mode},
    dial::{Dial, dial},
    emit::{emit, io_error_event},
    stream::{BLOCK_SIZE, Digest, StreamGen, stream_digest},
};

struct Plan {
    mode: Mode,
    send: u64,
    reply_bytes: u64,
    seed: u64,
    /// `--pause-after N --resume-file F`: after N bytes, print `paused` and wait for F to exist.
    pause: Option<Pause>,
    /// `--rate B`: send at most B bytes per second (a long, steady connection).
    rate: Option<u64>,
    timeout: Duration,
}

#[derive(Clone)]
struct Pause {
    at: u64,
    resume_file: PathBuf,
}

pub(super) fn run(args: &[String]) -> Result<i32, String> {
    let allowed = [
        "to",
        "mode",
        "send",
        "reply-bytes",
        "timeout-ms",
        "seed",
        "ipv6-mapped",
        "pause-after",
        "resume-file",
        "rate",
    ];
    let flags = Flags::parse(args, &allowed)?;
    let target = Dial::from_flags(&flags)?;
    let pause = match (flags.has("pause-after"), flags.path("resume-file")) {
        (false, None) => None,
        (true, Some(resume_file)) => Some(Pause { at: flags.u64_or("pause-after", 0)?, resume_file }),
        _ => return Err("--pause-after and --resume-file go together".into()),
    };
    let plan = Plan {
        mode: flags.mode()?,
        send: flags.u64_or("send", 0)?,
        reply_bytes: flags.u64_or("reply-bytes", 0)?,
        seed: flags.seed()?,
        pause,
        rate: match flags.u64_or("rate", 0)? {
            0 if flags.has("rate") => return Err("--rate must be at least 1 byte per second".into()),
            0 => None,
            rate => Some(rate),
        },
        timeout: target.timeout,
    };
    let stream = match dial(&target) {
        Ok(stream) => stream,
        Err(e) => {
            emit(&io_error_event(&format!("connect {}", target.addr), &e));
            return Ok(1);
        }
    };
    let started = Instant::now();
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("error: {e}"));
    let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("error: {e}"));
    emit(&json!({"event": "connected", "local": local, "peer": peer}));
    match session(stream, &plan) {
        Ok(mut done) => {
            let ok = done["ok"] == Value::Bool(true);
            done["elapsedMs"] = json!(started.elapsed().as_millis() as u64);
            emit(&done);
            Ok(if ok { 0 } else { 1 })
        }
        Err((what, e)) => {
            emit(&io_error_event(what, &e));
            Ok(1)
        }
    }
}

type SessionError = (&'static str, io::Error);

/// Sends on a writer thread while this thread reads; returns the `done` event.
fn session(stream: TcpStream, plan: &Plan) -> Result<Value, SessionError> {
    let writer_stream = stream.try_clone().map_err(|e| ("clone socket", e))?;
    let reading_ended = Arc::new(AtomicBool::new(false));
    let send = SendPlan {
        len: plan.send,
        seed: plan.seed,
        pause: plan.pause.clone(),
        rate: plan.rate,
        timeout: plan.timeout,
        reading_ended: reading_ended.clone(),
    };
    let writer = std::thread::spawn(move || send_stream(writer_stream, &send));
    let read = match plan.mode {
        Mode::Echo => read_all(&stream).map(|digest| echo_result(&digest)),
        Mode::Digest => read_digest_reply(&stream, plan),
    };
    // A writer paused mid-stream must not outlive a connection the peer has ended.
    reading_ended.store(true, Ordering::Release);
    if read.is_err() {
        // Unblock the writer if it is stuck on a dead connection.
        let _ = stream.shutdown(Shutdown::Both);
    }
    let sent = writer.join().map_err(|_| ("send", io::Error::other("writer thread panicked")))?;
    let mut done = read.map_err(|e| ("receive", e))?;
    let sent = sent.map_err(|e| ("send", e))?;
    let sent_ok = sent.len() == plan.send;
    done["sent"] = json!(sent.len());
    done["sentDigest"] = json!(sent.hex());
    let verified = match plan.mode {
        Mode::Echo => done["received"] == json!(sent.len()) && done["receivedDigest"] == json!(sent.hex()),
        Mode::Digest => {
            done["serverBytes"] == json!(sent.len())
                && done["serverDigest"] == json!(sent.hex())
                && done["replyOk"] == json!(true)
        }
    };
    done["ok"] = json!(sent_ok && verified);
    Ok(done)
}

struct SendPlan {
    len: u64,
    seed: u64,
    pause: Option<Pause>,
    rate: Option<u64>,
    timeout: Duration,
    /// Set once the reader saw EOF or an error: a pause then ends in an error.
    reading_ended: Arc<AtomicBool>,
}

/// Writes per pacing step with `--rate`.
const PACED_CHUNK: usize = 1024;

/// Sends `len` bytes of the stream (pausing if asked), then half-closes. Returns the digest of
/// what was sent.
fn send_stream(mut stream: TcpStream, plan: &SendPlan) -> io::Result<Digest> {
    let mut generator = StreamGen::new(plan.seed);
    let mut digest = Digest::new();
    let mut pause = plan.pause.as_ref();
    let mut pending: &[u8] = &[];
    let mut sent = 0u64;
    let started = Instant::now();
    loop {
        if let Some(rate) = plan.rate {
            // Not ahead of `rate`: sleep until the bytes sent so far are due.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if let Some(p) = pause.filter(|p| p.at == sent) {
            wait_for_resume(p, sent, plan.timeout, &plan.reading_ended)?;
            pause = None;
        }
        if sent == plan.len {
            break;
        }
        if pending.is_empty() {
            pending = generator.next_block();
        }
        let limit = pause.map_or(plan.len, |p| p.at.min(plan.len)) - sent;
        let chunk = if plan.rate.is_some() { PACED_CHUNK } else { usize::MAX };
        let n = (limit as usize).min(pending.len()).min(chunk);
        stream.write_all(&pending[..n])?;
        digest.update(&pending[..n]);
        sent += n as u64;
        pending = &pending[n..];
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(digest)
}

/// Prints `{"event":"paused","sent":N}` and waits (bounded by the timeout) for the resume file.
/// Fails as soon as the peer ends the connection: a paused connection that was cut is not paused.
fn wait_for_resume(pause: &Pause, sent: u64, timeout: Duration, reading_ended: &AtomicBool) -> io::Result<()> {
    emit(&json!({"event": "paused", "sent": sent, "resumeFile": pause.resume_file}));
    let deadline = Instant::now() + timeout;
    while !pause.resume_file.exists() {
        if reading_ended.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the peer ended the connection while paused"));
        }
        if Instant::now() >= deadline {
            let message = format!("{} did not appear within {timeout:?}", pause.resume_file.display());
            return Err(io::Error::new(io::ErrorKind::TimedOut, message));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn read_all(mut stream: &TcpStream) -> io::Result<Digest> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut digest = Digest::new();
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(digest);
        }
        digest.update(&buf[..n]);
    }
}

fn echo_result(received: &Digest) -> Value {
    json!({"event": "done", "mode": "echo", "received": received.len(), "receivedDigest": received.hex()})
}

/// Reads the server's `{"bytes","digest"}` line and then its reply stream to EOF.
fn read_digest_reply(mut stream: &TcpStream, plan: &Plan) -> io::Result<Value> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut head = Vec::new();
    let mut reply = Digest::new();
    let mut line = None;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        if line.is_none() {
            match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    head.extend_from_slice(&data[..end]);
                    line = Some(std::mem::take(&mut head));
                    data = &data[end + 1..];
                }
                None if head.len() > 4096 => {
                    return Err(io::Error::other("server's digest line is too long"));
                }
                None => {
                    head.extend_from_slice(data);
                    continue;
                }
            }
        }
        reply.update(data);
    }
    let line = line.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no digest line from the server"))?;
    let server: Value = serde_json::from_slice(&line)
        .map_err(|e| io::Error::other(format!("bad digest line {:?}: {e}", String::from_utf8_lossy(&line))))?;
    let expected = stream_digest(plan.seed, plan.reply_bytes);
    Ok(json!({
        "event": "done",
        "mode": "digest",
        "serverBytes": server["bytes"],
        "serverDigest": server["digest"],
        "replyBytes": reply.len(),
        "replyDigest": reply.hex(),
        "replyOk": reply.len() == plan.reply_bytes && reply.hex() == expected,
    }))
}
