//! Carries bytes both ways between two duplex streams (TCP sockets, HBONE streams), faithfully:
//! a FIN (half-close) from one side becomes a FIN to the other while the opposite direction keeps
//! flowing; a reset on one side becomes a reset on the other (TCP RST, or HTTP/2 RST_STREAM with
//! CONNECT_ERROR). Bytes are never reordered or dropped: each direction is one sequential
//! read → write_all loop.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
};

const BUFFER: usize = 64 * 1024;

/// A stream that splits into independent halves, and whose write half can abort the stream.
pub trait Duplex: Send {
    type Read: AsyncRead + Unpin + Send;
    type Write: AsyncWrite + Reset + Unpin + Send;
    fn into_split(self) -> (Self::Read, Self::Write);
}

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

/// Copies `from` → `to` until EOF, then half-closes `to`. Counts bytes delivered.
async fn pump<R, W>(from: &mut R, to: &mut W, delivered: &mut u64) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            return to.shutdown().await.map_err(PumpError::Write);
        }
        to.write_all(&buf[..n]).await.map_err(PumpError::Write)?;
        *delivered += n as u64;
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
    let (mut source_read, mut source_write) = source.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let (mut from_source, mut to_source) = (0u64, 0u64);
    let result = {
        let forward = pump(&mut source_read, &mut upstream_write, &mut from_source);
        let backward = pump(&mut upstream_read, &mut source_write, &mut to_source);
        tokio::pin!(forward, backward, cancel);
        let (mut forward_done, mut backward_done) = (false, false);
        loop {
            tokio::select! {
                () = &mut cancel => break Err((RelayEnd::Cancelled, io::Error::other("cancelled"))),
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
                RelayEnd::Cancelled | RelayEnd::Completed => {
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
