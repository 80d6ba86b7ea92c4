//! Small HTTP/1.1 JSON servers for admin APIs and the pod-event API: accept loops, one hyper
//! connection per client, and the response helpers every handler uses.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
pub use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use hyper::{header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

pub type Body = Full<Bytes>;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode response: {e}")),
    }
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &ErrorBody { error: &message.into() })
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("static response parts are valid")
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            Err(error(StatusCode::BAD_REQUEST, format!("cannot read request body (limit {MAX_BODY} bytes): {e}")))
        }
    }
}

/// The value of `key` in the request's query string.
pub fn query_param<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Serves one connection with `handler`, logging (not propagating) protocol errors.
pub fn serve_connection<IO, H, F>(io: IO, handler: Arc<H>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    });
}

/// Accepts TCP connections on `listener` forever, serving each with `handler`.
pub fn serve_tcp<H, F>(listener: tokio::net::TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => serve_connection(stream, handler.clone()),
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}
