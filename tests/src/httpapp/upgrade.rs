//! WebSocket-style upgrades, both ends, for testing proxies that must pass them on.
//!
//! - server (`serve`): a request with `Connection: upgrade` and `Upgrade: websocket` is answered
//!   `101 Switching Protocols`; on the upgraded connection the server writes its name and a
//!   newline, then echoes every byte it reads, and ends its side when the client ends its own.
//! - client (`upgrade`): sends the upgrade request over HTTP/1.1; after a 101 writes
//!   `--bytes` bytes of a pattern, ends its side (half-close), reads until the server ends, and
//!   reports whether the echo came back whole and in order.
//!
//! No WebSocket framing: a proxy never looks inside the upgraded stream, so raw bytes test it.

use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{args::UpgradeArgs, emit::emit, observed::headers_json, serve::ResponseBody};

/// Whether `request` asks for a WebSocket upgrade.
pub(super) fn is_websocket<B>(request: &Request<B>) -> bool {
    let connection_upgrade = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let websocket =
        request.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    connection_upgrade && websocket
}

/// The server's side: the 101, and a task that serves the upgraded connection.
pub(super) fn accept(name: &str, mut request: Request<Incoming>) -> Response<ResponseBody> {
    let on_upgrade = hyper::upgrade::on(&mut request);
    emit(&json!({
        "event": "upgrade",
        "path": request.uri().path(),
        "headers": headers_json(request.headers()),
    }));
    let name = name.to_owned();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                emit(&json!({"event": "upgrade-error", "message": e.to_string()}));
                return;
            }
        };
        let mut io = TokioIo::new(upgraded);
        let echoed = async {
            io.write_all(format!("{name}\n").as_bytes()).await?;
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0u64;
            loop {
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n]).await?;
                total += n as u64;
            }
            io.shutdown().await?;
            Ok::<u64, std::io::Error>(total)
        };
        match echoed.await {
            Ok(bytes) => emit(&json!({"event": "upgrade-closed", "echoedBytes": bytes})),
            Err(e) => emit(&json!({"event": "upgrade-error", "message": e.to_string()})),
        }
    });
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response
}

/// Byte `i` of what the client sends.
fn pattern(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// The client's side: one upgrade, reported as an `upgrade` event.
pub(super) async fn run(args: UpgradeArgs) -> Result<(), String> {
    let exchange = async {
        let stream = TcpStream::connect(&args.target.connect)
            .await
            .map_err(|e| format!("connecting to {}: {e}", args.target.connect))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(connection.with_upgrades());
        let request = Request::get(args.target.path.as_str())
            .header(header::HOST, args.authority.as_str())
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        let mut response = sender.send_request(request).await.map_err(|e| format!("sending the request: {e}"))?;
        let status = response.status();
        let headers = headers_json(response.headers());
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Ok(json!({
                "event": "upgrade",
                "status": status.as_u16(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }));
        }
        let upgraded = hyper::upgrade::on(&mut response).await.map_err(|e| format!("switching protocols: {e}"))?;
        let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
        let sent: Vec<u8> = (0..args.bytes).map(pattern).collect();
        let writer = async move {
            write.write_all(&sent).await?;
            write.shutdown().await
        };
        let reader = async move {
            let mut received = Vec::new();
            read.read_to_end(&mut received).await.map(|_| received)
        };
        let (written, received) = tokio::join!(writer, reader);
        written.map_err(|e| format!("writing to the upgraded connection: {e}"))?;
        let received = received.map_err(|e| format!("reading the upgraded connection: {e}"))?;
        let (served_by, echo) = match received.iter().position(|&b| b == b'\n') {
            Some(newline) => (String::from_utf8_lossy(&received[..newline]).into_owned(), &received[newline + 1..]),
            None => (String::new(), &received[..]),
        };
        let intact = echo.len() == args.bytes && echo.iter().enumerate().all(|(i, &b)| b == pattern(i));
        Ok::<_, String>(json!({
            "event": "upgrade",
            "status": status.as_u16(),
            "headers": headers,
            "servedBy": served_by,
            "sentBytes": args.bytes,
            "echoedBytes": echo.len(),
            "echoIntact": intact,
        }))
    };
    let event = tokio::time::timeout(args.timeout, exchange)
        .await
        .map_err(|_| format!("no complete exchange within {:?}", args.timeout))??;
    emit(&event);
    Ok(())
}

/// How long `upgrade` waits for the whole exchange by default.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
