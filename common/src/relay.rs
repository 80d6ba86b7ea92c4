//! Carries bytes both ways between two duplex streams (TCP sockets, HBONE streams), faithfully:
//! a FIN (half-close) from one side becomes a FIN to the other while the opposite direction keeps
//! flowing; a reset on one side becomes a reset on the other (TCP RST, or HTTP/2 RST_STREAM with
//! CONNECT_ERROR). Bytes are never reordered or dropped: each direction is one sequential
//! read → write loop.
//!
//! Each direction moves chunks of [`Bytes`], not copies: a socket is read into a buffer that
//! becomes the chunk, and an HBONE stream, which receives and sends `Bytes` anyway, hands them
//! over as they are ([`ChunkRead`], [`ChunkWrite`]). Between a socket and a tunnel, the relay
//! itself copies nothing.

use std::{
    future::poll_fn,
    io,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

/// How much one read of a socket may take.
const BUFFER: usize = 64 * 1024;
/// A read buffer with less room than this left is replaced rather than read into.
const MIN_READ: usize = 16 * 1024;

/// A stream that splits into independent halves, and whose write half can abort the stream.
pub trait Duplex: Send {
    type Read: ChunkRead + Send;
    type Write: ChunkWrite + Reset + Send;
    fn into_split(self) -> (Self::Read, Self::Write);
}

/// A stream read as chunks. The default reads into `buf` and splits off what arrived; a stream
/// that already holds its data as `Bytes` returns them instead.
pub trait ChunkRead: AsyncRead + Unpin {
    /// The next chunk; empty at the end of the stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<Bytes>> {
        if buf.capacity() - buf.len() < MIN_READ {
            // Reuses the allocation when every earlier chunk of it is gone.
            buf.reserve(BUFFER);
        }
        ready!(tokio_util::io::poll_read_buf(Pin::new(self), cx, buf))?;
        Poll::Ready(Ok(buf.split().freeze()))
    }
}

/// A stream written in chunks. The default writes the bytes; a stream that sends `Bytes` takes
/// the chunk itself.
pub trait ChunkWrite: AsyncWrite + Unpin {
    /// Writes all of `chunk`, advancing it past what has been written.
    fn poll_write_chunk(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<()>> {
        while !chunk.is_empty() {
            let n = ready!(Pin::new(&mut *self).poll_write(cx, chunk))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            chunk.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl ChunkRead for OwnedReadHalf {}
impl ChunkWrite for OwnedWriteHalf {}
impl<T: AsyncRead> ChunkRead for tokio::io::ReadHalf<T> {}
impl<T: AsyncWrite> ChunkWrite for tokio::io::WriteHalf<T> {}

/// Aborting a stream instead of closing it cleanly.
pub trait Reset {
    /// Makes the peer see a reset instead of a clean close.
    fn reset(self);
}

impl Duplex for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        TcpStream::into_split(self)
    }
}

impl Reset for OwnedWriteHalf {
    fn reset(self) {
        // With a zero linger time, closing the socket sends a RST. `forget` skips the write
        // half's shutdown-on-drop (a FIN); the socket closes with the read half.
        let _ = socket2::SockRef::from(self.as_ref()).set_linger(Some(Duration::ZERO));
        self.forget();
    }
}

/// Makes closing `stream` send a RST instead of a FIN.
pub fn reset_tcp(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// How a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both directions finished with a clean close (half-closes included).
    Completed,
    /// The source broke off; the reset was passed on to the upstream.
    SourceReset,
    /// The upstream broke off; the reset was passed on to the source.
    UpstreamReset,
    /// The caller cancelled the relay (e.g. a new policy denies the connection); both sides
    /// were reset.
    Cancelled,
    /// No byte moved either way for the idle timeout; both sides were reset.
    IdleTimeout,
}

#[derive(Debug)]
pub struct RelayOutcome {
    pub bytes_from_source: u64,
    pub bytes_to_source: u64,
    pub end: RelayEnd,
    /// The error behind a reset.
    pub error: Option<io::Error>,
}

#[derive(Debug)]
enum PumpError {
    /// Reading from the sending side failed: it reset (or broke) the stream.
    Read(io::Error),
    /// Writing to the receiving side failed: it reset (or broke) the stream.
    Write(io::Error),
}

/// Moves `from` → `to` until EOF, then half-closes `to`. Counts bytes delivered, and notes when
/// the last chunk was (`activity`, when idle time is watched).
async fn pump<R: ChunkRead, W: ChunkWrite>(
    from: &mut R,
    to: &mut W,
    delivered: &AtomicU64,
    activity: Option<&Activity>,
) -> Result<(), PumpError> {
    let mut buf = BytesMut::new();
    loop {
        let mut chunk = poll_fn(|cx| from.poll_chunk(cx, &mut buf)).await.map_err(PumpError::Read)?;
        if chunk.is_empty() {
            return to.shutdown().await.map_err(PumpError::Write);
        }
        let n = chunk.len() as u64;
        poll_fn(|cx| to.poll_write_chunk(cx, &mut chunk)).await.map_err(PumpError::Write)?;
        delivered.fetch_add(n, Ordering::Relaxed);
        if let Some(activity) = activity {
            activity.touch();
        }
    }
}

/// A relay's idle timeout, and when bytes last moved (milliseconds since the relay started).
struct Activity {
    idle: Duration,
    started: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the relay becomes idle if nothing moves before then.
    fn deadline(&self) -> tokio::time::Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + self.idle
    }
}

/// Relays until both directions are finished or one side resets; says how it ended.
pub async fn relay<S: Duplex, U: Duplex>(source: S, upstream: U) -> RelayOutcome {
    relay_until(source, upstream, std::future::pending()).await
}

/// [`relay`], but resetting both sides as soon as `cancel` completes.
pub async fn relay_until<S: Duplex, U: Duplex>(
    source: S,
    upstream: U,
    cancel: impl std::future::Future<Output = ()>,
) -> RelayOutcome {
    relay_watched(source, upstream, cancel, None).await
}

/// [`relay`], but resetting both sides once no byte has moved either way for `idle` (Envoy's
/// TCP proxy `idle_timeout`, which Istio sets from a DestinationRule's
/// `connectionPool.tcp.idleTimeout`); `None`: exactly [`relay`].
pub async fn relay_with_idle_timeout<S: Duplex, U: Duplex>(
    source: S,
    upstream: U,
    idle: Option<Duration>,
) -> RelayOutcome {
    relay_watched(source, upstream, std::future::pending(), idle).await
}

async fn relay_watched<S: Duplex, U: Duplex>(
    source: S,
    upstream: U,
    cancel: impl std::future::Future<Output = ()>,
    idle: Option<Duration>,
) -> RelayOutcome {
    let (mut source_read, mut source_write) = source.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let (from_source, to_source) = (AtomicU64::new(0), AtomicU64::new(0));
    let activity = idle.map(|idle| Activity { idle, started: tokio::time::Instant::now(), last_ms: AtomicU64::new(0) });
    let result = {
        let forward = pump(&mut source_read, &mut upstream_write, &from_source, activity.as_ref());
        let backward = pump(&mut upstream_read, &mut source_write, &to_source, activity.as_ref());
        let idle_timer = tokio::time::sleep(idle.unwrap_or(Duration::MAX / 4));
        tokio::pin!(forward, backward, cancel, idle_timer);
        let (mut forward_done, mut backward_done) = (false, false);
        loop {
            tokio::select! {
                () = &mut cancel => break Err((RelayEnd::Cancelled, io::Error::other("cancelled"))),
                () = &mut idle_timer, if activity.is_some() => {
                    let Some(activity) = &activity else { continue };
                    let deadline = activity.deadline();
                    if tokio::time::Instant::now() >= deadline {
                        let idle = activity.idle;
                        let error = io::Error::new(io::ErrorKind::TimedOut, format!("no bytes either way for {idle:?}"));
                        break Err((RelayEnd::IdleTimeout, error));
                    }
                    idle_timer.as_mut().reset(deadline);
                }
                result = &mut forward, if !forward_done => match result {
                    Ok(()) => forward_done = true,
                    Err(PumpError::Read(e)) => break Err((RelayEnd::SourceReset, e)),
                    Err(PumpError::Write(e)) => break Err((RelayEnd::UpstreamReset, e)),
                },
                result = &mut backward, if !backward_done => match result {
                    Ok(()) => backward_done = true,
                    Err(PumpError::Read(e)) => break Err((RelayEnd::UpstreamReset, e)),
                    Err(PumpError::Write(e)) => break Err((RelayEnd::SourceReset, e)),
                },
            }
            if forward_done && backward_done {
                break Ok(());
            }
        }
    };
    let (from_source, to_source) = (from_source.into_inner(), to_source.into_inner());
    match result {
        Ok(()) => RelayOutcome {
            bytes_from_source: from_source,
            bytes_to_source: to_source,
            end: RelayEnd::Completed,
            error: None,
        },
        Err((end, error)) => {
            // Pass the reset on to whichever side is still there (both, when cancelled).
            match end {
                RelayEnd::SourceReset => upstream_write.reset(),
                RelayEnd::UpstreamReset => source_write.reset(),
                RelayEnd::Cancelled | RelayEnd::IdleTimeout | RelayEnd::Completed => {
                    upstream_write.reset();
                    source_write.reset();
                }
            }
            RelayOutcome { bytes_from_source: from_source, bytes_to_source: to_source, end, error: Some(error) }
        }
    }
}

#[cfg(test)]
mod tests;
