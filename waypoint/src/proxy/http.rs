//! HTTP over one CONNECT stream: HTTP/1.1 (kept alive) or HTTP/2 (multiplexed), by the service
//! port's protocol and what the client sends first. A port declared `http` takes both HTTP/1.1
//! and HTTP/2 with prior knowledge, as Envoy's codec `AUTO` does on Istio's inbound listeners;
//! `http2`/`grpc` ports take HTTP/2 only; an undeclared port may also turn out to be TCP. Every
//! request goes through [`crate::pipeline::handle`].

use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc};

use ambit_common::api::v1::AppProtocol;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Downstream, Waypoint};
use crate::{
    detect::{Detected, detect},
    io::{Joined, Rewind},
    pipeline,
};

type Tunnel = Joined<ambit_common::hbone::stream::H2Read, ambit_common::hbone::stream::H2Write>;

pub async fn serve_stream(wp: Arc<Waypoint>, down: Downstream, protocol: AppProtocol, mut io: Tunnel) {
    match protocol {
        AppProtocol::Http => match detect(&mut io).await {
            Ok((Detected::Http2, prefix)) => http2(wp, down, Rewind::new(prefix, io)).await,
            // Anything else on a declared HTTP port is HTTP/1.1 (a malformed request gets its
            // 400 from the HTTP/1 codec; a silent client is simply waited for).
            Ok((Detected::Http1 | Detected::Tcp, prefix)) => http1(wp, down, Rewind::new(prefix, io)).await,
            Err(e) => tracing::debug!(peer = %down.peer, error = %e, "the stream failed before its first request"),
        },
        AppProtocol::Http2 | AppProtocol::Grpc => http2(wp, down, io).await,
        AppProtocol::Tcp => super::tcp::relay(wp, down, io, bytes::Bytes::new()).await,
        AppProtocol::Unspecified => match detect(&mut io).await {
            Ok((Detected::Http1, prefix)) => http1(wp, down, Rewind::new(prefix, io)).await,
            Ok((Detected::Http2, prefix)) => http2(wp, down, Rewind::new(prefix, io)).await,
            Ok((Detected::Tcp, prefix)) => super::tcp::relay(wp, down, io, prefix).await,
            Err(e) => tracing::debug!(peer = %down.peer, error = %e, "the stream failed before its protocol was known"),
        },
    }
}

/// The request's pipeline, boxed: its future is large, and hyper moves the service's future
/// several times (into each HTTP/2 stream's task, for one); a box moves as a pointer.
fn handle(
    wp: Arc<Waypoint>,
    down: Arc<Downstream>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Pin<Box<dyn Future<Output = Result<hyper::Response<crate::body::Body>, Infallible>> + Send>> {
    Box::pin(async move { Ok(pipeline::handle(&wp, &down, request).await) })
}

async fn http1<IO>(wp: Arc<Waypoint>, mut down: Downstream, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    down.version = http::Version::HTTP_11;
    let down = Arc::new(down);
    let service = service_fn(move |request| handle(wp.clone(), down.clone(), request));
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream HTTP/1.1 connection ended with an error");
    }
}

async fn http2<IO>(wp: Arc<Waypoint>, mut down: Downstream, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    down.version = http::Version::HTTP_2;
    let down = Arc::new(down);
    let service = service_fn(move |request| handle(wp.clone(), down.clone(), request));
    let result = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "downstream HTTP/2 connection ended with an error");
    }
}
