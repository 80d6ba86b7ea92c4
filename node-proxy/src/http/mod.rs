//! The node proxy's two small HTTP/1.1 servers: the pod-event API on a unix socket (for the CNI
//! plugin) and the admin API on 127.0.0.1:15000. JSON in, JSON out.

pub(crate) mod admin;
pub(crate) mod api;

use std::{convert::Infallible, future::Future};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) type Body = Full<Bytes>;

/// Requests bodies larger than this are refused (a pod spec is a few hundred bytes).
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode response: {e}")),
    }
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &ambit_common::pod_api::ApiError { error: message.into() })
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            Err(error(StatusCode::BAD_REQUEST, format!("cannot read request body (limit {MAX_BODY} bytes): {e}")))
        }
    }
}

/// Serves one connection with `handler`, logging (not propagating) protocol errors.
pub(crate) fn serve_connection<IO, H, F>(io: IO, handler: H)
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
