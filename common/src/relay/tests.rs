use tokio::net::TcpListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    assert_eq!(closing.end, RelayEnd::Completed);
    assert_eq!((closing.bytes_from_source, closing.bytes_to_source), (7, 31));
}

#[tokio::test]
async fn upstream_reset_resets_the_source() {
    let (mut app, source) = pair().await;
    let (upstream, server) = pair().await;
    let relay = tokio::spawn(relay(source, upstream));
    reset_tcp(&server);
    drop(server);
    let closing = relay.await.unwrap();
    assert_eq!(closing.end, RelayEnd::UpstreamReset);
    let mut buf = [0u8; 1];
    let err = app.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn source_reset_resets_the_upstream() {
    let (app, source) = pair().await;
    let (upstream, mut server) = pair().await;
    let relay = tokio::spawn(relay(source, upstream));
    reset_tcp(&app);
    drop(app);
    assert_eq!(relay.await.unwrap().end, RelayEnd::SourceReset);
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

#[tokio::test]
async fn cancelling_resets_both_sides() {
    let (mut app, source) = pair().await;
    let (upstream, mut server) = pair().await;
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay_until(source, upstream, async {
        let _ = cancelled.await;
    }));
    app.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    cancel.send(()).unwrap();
    assert_eq!(relay.await.unwrap().end, RelayEnd::Cancelled);
    let mut byte = [0u8; 1];
    assert_eq!(app.read(&mut byte).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(server.read(&mut byte).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn traffic_either_way_keeps_a_relay_open_and_idleness_resets_both_sides() {
    let (mut app, source) = pair().await;
    let (upstream, mut server) = pair().await;
    let relay = tokio::spawn(relay_with_idle_timeout(source, upstream, Some(Duration::from_secs(60))));
    // A byte every 40 s, in turn each way: the relay outlives its 60 s idle timeout twice over.
    let mut buf = [0u8; 4];
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(40)).await;
        if round % 2 == 0 {
            app.write_all(b"ping").await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
        } else {
            server.write_all(b"pong").await.unwrap();
            app.read_exact(&mut buf).await.unwrap();
        }
    }
    assert!(!relay.is_finished(), "still open after 120 s with traffic every 40 s");
    // Then nothing moves: both sides are reset.
    let closing = relay.await.unwrap();
    assert_eq!(closing.end, RelayEnd::IdleTimeout);
    assert_eq!((closing.bytes_from_source, closing.bytes_to_source), (8, 4));
    assert_eq!(app.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(server.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}
