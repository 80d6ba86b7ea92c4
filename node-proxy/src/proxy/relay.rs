//! Carries bytes both ways between two TCP connections, faithfully: a FIN (half-close) from one
//! side becomes a FIN to the other while the opposite direction keeps flowing; a reset on one side
//! becomes a reset on the other. Bytes are never reordered or dropped: each direction is one
//! sequential read → write_all loop.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::records::{Closing, Outcome};

const BUFFER: usize = 64 * 1024;

#[derive(Debug)]
enum PumpError {
    /// Reading from the sending side failed: it reset (or broke) the connection.
    Read(io::Error),
    /// Writing to the receiving side failed: it reset (or broke) the connection.
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
pub(crate) async fn relay(mut source: TcpStream, mut upstream: TcpStream) -> Closing {
    let mut from_source = 0u64;
    let mut to_source = 0u64;
    let outcome = {
        let (mut source_read, mut source_write) = source.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let forward = pump(&mut source_read, &mut upstream_write, &mut from_source);
        let backward = pump(&mut upstream_read, &mut source_write, &mut to_source);
        tokio::pin!(forward, backward);
        let (mut forward_done, mut backward_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut forward, if !forward_done => match result {
                    Ok(()) => forward_done = true,
                    // The source broke off (read failed) or the upstream did (write failed).
                    Err(PumpError::Read(e)) => break Err((Outcome::SourceReset, e)),
                    Err(PumpError::Write(e)) => break Err((Outcome::UpstreamReset, e)),
                },
                result = &mut backward, if !backward_done => match result {
                    Ok(()) => backward_done = true,
                    Err(PumpError::Read(e)) => break Err((Outcome::UpstreamReset, e)),
                    Err(PumpError::Write(e)) => break Err((Outcome::SourceReset, e)),
                },
            }
            if forward_done && backward_done {
                break Ok(());
            }
        }
    };
    match outcome {
        Ok(()) => Closing {
            bytes_from_source: from_source,
            bytes_to_source: to_source,
            outcome: Outcome::Completed,
            error: None,
        },
        Err((outcome, error)) => {
            // Pass the reset on to whichever side is still there.
            let survivor = if outcome == Outcome::SourceReset { &upstream } else { &source };
            reset(survivor);
            Closing {
                bytes_from_source: from_source,
                bytes_to_source: to_source,
                outcome,
                error: Some(error.to_string()),
            }
        }
    }
}

/// Makes closing `stream` send a RST instead of a FIN.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair over loopback: (client side, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction_open() {
        let (mut app, source) = pair().await;
        let (upstream, mut server) = pair().await;
        let relay = tokio::spawn(relay(source, upstream));

        app.write_all(b"request").await.unwrap();
        app.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap(); // sees EOF: the FIN was passed on
        assert_eq!(got, b"request");
        server.write_all(b"response after the client's FIN").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        app.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"response after the client's FIN");

        let closing = relay.await.unwrap();
        assert_eq!(closing.outcome, Outcome::Completed);
        assert_eq!((closing.bytes_from_source, closing.bytes_to_source), (7, 31));
    }

    #[tokio::test]
    async fn upstream_reset_resets_the_source() {
        let (mut app, source) = pair().await;
        let (upstream, server) = pair().await;
        let relay = tokio::spawn(relay(source, upstream));
        reset(&server);
        drop(server);
        let closing = relay.await.unwrap();
        assert_eq!(closing.outcome, Outcome::UpstreamReset);
        let mut buf = [0u8; 1];
        let err = app.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn source_reset_resets_the_upstream() {
        let (app, source) = pair().await;
        let (upstream, mut server) = pair().await;
        let relay = tokio::spawn(relay(source, upstream));
        reset(&app);
        drop(app);
        assert_eq!(relay.await.unwrap().outcome, Outcome::SourceReset);
        let mut buf = [0u8; 1];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn large_transfers_arrive_intact_and_in_order() {
        let (mut app, source) = pair().await;
        let (upstream, mut server) = pair().await;
        let relay = tokio::spawn(relay(source, upstream));
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            app.write_all(&data).await.unwrap();
            app.shutdown().await.unwrap();
            app
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got == expected, "relayed bytes differ");
        drop(server);
        drop(writer.await.unwrap());
        assert_eq!(relay.await.unwrap().bytes_from_source, expected.len() as u64);
    }
}
