//! HBONE over in-memory pipes (TLS is the caller's and is tested with it): tunnels carry bytes
//! both ways with half-close, resets cross as RST_STREAM, the pool reuses and caps connections.

use std::{net::SocketAddr, sync::Arc};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{client::Pool, server::serve, *};
use crate::relay::{Duplex, RelayEnd, relay};

/// A server on the far end of an in-memory pipe that accepts every CONNECT and echoes, or
/// refuses port 1.
fn echo_server(io: DuplexStream) {
    tokio::spawn(async move {
        let _ = serve(io, &Settings::default(), |request| async move {
            if request.authority.ends_with(":1") {
                return request.reject(http::StatusCode::FORBIDDEN);
            }
            let Ok(stream) = request.accept() else { return };
            let (mut read, mut write) = stream.into_split();
            let _ = tokio::io::copy(&mut read, &mut write).await;
            let _ = write.shutdown().await;
        })
        .await;
    });
}

fn connector() -> impl FnOnce() -> std::future::Ready<std::io::Result<DuplexStream>> {
    || {
        let (client, server) = tokio::io::duplex(1024 * 1024);
        echo_server(server);
        std::future::ready(Ok(client))
    }
}

const TARGET: &str = "10.1.0.2:8080";

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_and_half_closes() {
    let pool: Pool<&str> = Pool::new(Settings::default());
    let stream = pool.open(&"key", TARGET.parse().unwrap(), connector()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&data).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    read.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    assert!(echoed == expected, "echoed bytes differ");
}

#[tokio::test]
async fn streams_share_a_connection_up_to_the_cap() {
    let settings = Settings { max_streams_per_connection: 2, ..Settings::default() };
    let pool: Pool<&str> = Pool::new(settings);
    let target: SocketAddr = TARGET.parse().unwrap();
    let a = pool.open(&"k", target, connector()).await.unwrap();
    let reuse = || async { panic!("the second stream must reuse the connection") };
    let b = pool.open::<_, _, DuplexStream>(&"k", target, reuse).await.unwrap();
    assert_eq!(pool.connections(&"k"), 1);
    let c = pool.open(&"k", target, connector()).await.unwrap();
    assert_eq!(pool.connections(&"k"), 2, "a third stream needs a second connection");
    let other = pool.open(&"other", target, connector()).await.unwrap();
    assert_eq!(pool.connections(&"other"), 1, "keys never share connections");
    drop((a, b, c, other));
}

#[tokio::test]
async fn a_refusal_is_reported_with_its_status() {
    let pool: Pool<&str> = Pool::new(Settings::default());
    let error = pool.open(&"k", "10.1.0.2:1".parse().unwrap(), connector()).await.err().unwrap();
    assert!(matches!(error, HboneError::Refused { status: 403, .. }), "{error}");
    assert!(!error.stale_connection());
}

#[tokio::test]
async fn a_reset_crosses_the_tunnel() {
    // A relay from a TCP client through a tunnel; the client resets; the tunnel's far end must
    // see the stream reset, not a clean end.
    let (far_tx, far_rx) = tokio::sync::oneshot::channel();
    let far_tx = Arc::new(std::sync::Mutex::new(Some(far_tx)));
    let pool: Pool<&str> = Pool::new(Settings::default());
    let connect = move || {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let _ = serve(server, &Settings::default(), move |request| {
                let far_tx = far_tx.clone();
                async move {
                    let (mut read, _write) = request.accept().unwrap().into_split();
                    let mut sink = Vec::new();
                    let result = read.read_to_end(&mut sink).await;
                    let _ = far_tx.lock().unwrap().take().unwrap().send(result.map(|_| sink.len()));
                }
            })
            .await;
        });
        std::future::ready(Ok(client))
    };
    let tunnel = pool.open(&"k", TARGET.parse().unwrap(), connect).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut app = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let relayed = tokio::spawn(relay(accepted, tunnel));
    app.write_all(b"partial").await.unwrap();
    crate::relay::reset_tcp(&app);
    drop(app);
    assert_eq!(relayed.await.unwrap().end, RelayEnd::SourceReset);
    let far = far_rx.await.unwrap();
    assert_eq!(far.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
}

/// A TCP echo server on loopback; its address.
async fn tcp_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn relays_on_both_ends_carry_a_large_transfer_intact() {
    // app → socket → relay → tunnel → relay → socket → echo, and back: the relays move the
    // tunnel's DATA as chunks (no copy), which must keep every byte, in order, with flow control.
    let echo = tcp_echo().await;
    let connect = move || {
        let (client, server) = tokio::io::duplex(256 * 1024);
        tokio::spawn(async move {
            let _ = serve(server, &Settings::default(), |request| async move {
                let Ok(app) = tokio::net::TcpStream::connect(echo).await else { return };
                let Ok(stream) = request.accept() else { return };
                relay(stream, app).await;
            })
            .await;
        });
        std::future::ready(Ok(client))
    };
    let pool: Pool<&str> = Pool::new(Settings::default());
    let tunnel = pool.open(&"k", TARGET.parse().unwrap(), connect).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    let relayed = tokio::spawn(relay(accepted, tunnel));

    let data: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let expected = data.clone();
    let (mut read, mut write) = app.into_split();
    let writer = tokio::spawn(async move {
        for piece in data.chunks(100_003) {
            write.write_all(piece).await.unwrap();
        }
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::with_capacity(expected.len());
    read.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), expected.len());
    assert!(echoed == expected, "echoed bytes differ");
    let outcome = relayed.await.unwrap();
    assert_eq!(outcome.end, RelayEnd::Completed);
    assert_eq!((outcome.bytes_from_source, outcome.bytes_to_source), (expected.len() as u64, expected.len() as u64));
}
