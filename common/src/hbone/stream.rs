//! One HBONE (HTTP/2 CONNECT) stream as a byte stream.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::to_io;
use crate::relay::{ChunkRead, ChunkWrite, Duplex, Reset};

/// Counts a pooled connection's open streams; decrements when the stream's halves are gone.
pub(crate) struct StreamSlot(pub(crate) Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct H2Stream {
    read: H2Read,
    write: H2Write,
}

impl H2Stream {
    pub(crate) fn new(recv: RecvStream, send: SendStream<Bytes>, slot: Option<StreamSlot>) -> Self {
        let slot = slot.map(Arc::new);
        Self {
            read: H2Read { recv, pending: Bytes::new(), _slot: slot.clone() },
            write: H2Write { send, shut_down: false, _slot: slot },
        }
    }
}

impl Duplex for H2Stream {
    type Read = H2Read;
    type Write = H2Write;

    fn into_split(self) -> (H2Read, H2Write) {
        (self.read, self.write)
    }
}

pub struct H2Read {
    recv: RecvStream,
    /// Received but not yet read.
    pending: Bytes,
    _slot: Option<Arc<StreamSlot>>,
}

impl H2Read {
    /// Data received and not yet read (empty at END_STREAM).
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())), // END_STREAM: EOF
                Some(Ok(data)) => {
                    // Give the window back at once: data is buffered here, not in h2.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for H2Read {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl ChunkRead for H2Read {
    /// The received DATA as it is.
    fn poll_chunk(&mut self, cx: &mut Context<'_>, _buf: &mut BytesMut) -> Poll<io::Result<Bytes>> {
        ready!(self.poll_pending(cx))?;
        Poll::Ready(Ok(std::mem::take(&mut self.pending)))
    }
}

pub struct H2Write {
    send: SendStream<Bytes>,
    shut_down: bool,
    _slot: Option<Arc<StreamSlot>>,
}

impl H2Write {
    /// How many of `wanted` bytes the peer's flow-control window lets us send now (at least 1).
    fn poll_capacity(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<io::Result<usize>> {
        self.send.reserve_capacity(wanted);
        loop {
            match ready!(self.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "HBONE stream closed"))),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(0)) => continue,
                Some(Ok(capacity)) => return Poll::Ready(Ok(capacity.min(wanted))),
            }
        }
    }
}

impl AsyncWrite for H2Write {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_capacity(cx, buf.len()))?;
        self.send.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Half-close: END_STREAM.
    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut_down {
            self.shut_down = true;
            self.send.send_data(Bytes::new(), true).map_err(to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl ChunkWrite for H2Write {
    /// Sends the chunk itself, in as many DATA frames as flow control asks for.
    fn poll_write_chunk(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<()>> {
        while !chunk.is_empty() {
            let n = ready!(self.poll_capacity(cx, chunk.len()))?;
            self.send.send_data(chunk.split_to(n), false).map_err(to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Reset for H2Write {
    /// RST_STREAM with CONNECT_ERROR: "the connection established in response to a CONNECT
    /// request was reset or abnormally closed" (RFC 9113 §8.5).
    fn reset(mut self) {
        self.send.send_reset(Reason::CONNECT_ERROR);
    }
}
