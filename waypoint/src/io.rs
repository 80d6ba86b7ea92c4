//! Byte streams for hyper and the relay: the two halves of an HBONE stream as one stream
//! ([`Joined`]), a stream with bytes already read in front of it ([`Rewind`], after
//! protocol detection), and any stream as a relay's [`Duplex`] ([`Plain`]).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use ambit_common::relay::{ChunkRead, ChunkWrite, Duplex, Reset};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

/// A read half and a write half as one stream.
pub struct Joined<R, W> {
    read: R,
    write: W,
}

impl<R, W> Joined<R, W> {
    pub fn new(read: R, write: W) -> Self {
        Self { read, write }
    }
}

/// An HBONE stream as one `AsyncRead + AsyncWrite` (hyper runs over it).
pub fn joined<D: Duplex>(stream: D) -> Joined<D::Read, D::Write> {
    let (read, write) = stream.into_split();
    Joined::new(read, write)
}

impl<R, W> Duplex for Joined<R, W>
where
    R: ChunkRead + Send,
    W: ChunkWrite + Reset + Send,
{
    type Read = R;
    type Write = W;

    fn into_split(self) -> (R, W) {
        (self.read, self.write)
    }
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Joined<R, W> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Joined<R, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

/// `prefix` (bytes already read from `inner`) is read again first.
pub struct Rewind<IO> {
    prefix: Bytes,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Bytes, inner: IO) -> Self {
        Self { prefix, inner }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Any byte stream as a [`Duplex`] for the relay, for streams that cannot be reset (an upgraded
/// HTTP/1.1 connection, behind hyper): their reset is a close.
pub struct Plain<T>(pub T);

pub struct PlainWrite<T>(WriteHalf<T>);

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for Plain<T> {
    type Read = ReadHalf<T>;
    type Write = PlainWrite<T>;

    fn into_split(self) -> (ReadHalf<T>, PlainWrite<T>) {
        let (read, write) = tokio::io::split(self.0);
        (read, PlainWrite(write))
    }
}

impl<T> Reset for PlainWrite<T> {
    /// Dropping the half closes the stream once the read half is gone too.
    fn reset(self) {}
}

impl<T: AsyncWrite> ChunkWrite for PlainWrite<T> {}

impl<T: AsyncWrite> AsyncWrite for PlainWrite<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn rewind_reads_the_prefix_then_the_stream() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut rewound = Rewind::new(Bytes::from_static(b"hello"), near);
        let mut out = String::new();
        rewound.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
