//! The HBONE server side of one connection: CONNECT streams are handed to a handler as they
//! arrive; anything that is not a CONNECT with an authority is refused.

use std::future::Future;

use bytes::Bytes;
use h2::{RecvStream, server::SendResponse};
use http::{HeaderMap, Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{H2Stream, HboneError, Settings};

/// A CONNECT request waiting for an answer.
pub struct ConnectRequest {
    /// The original destination, `ip:port` as the client sent it.
    pub authority: String,
    pub headers: HeaderMap,
    respond: SendResponse<Bytes>,
    recv: RecvStream,
}

impl ConnectRequest {
    /// Answers 200 and returns the tunnel.
    pub fn accept(mut self) -> Result<H2Stream, HboneError> {
        let response = Response::builder().status(StatusCode::OK).body(()).expect("static response is valid");
        let send = self.respond.send_response(response, false).map_err(HboneError::Connection)?;
        Ok(H2Stream::new(self.recv, send, None))
    }

    /// Answers with `status` and ends the stream.
    pub fn reject(mut self, status: StatusCode) {
        let response = Response::builder().status(status).body(()).expect("static response is valid");
        let _ = self.respond.send_response(response, true);
    }
}

/// Serves HBONE on an accepted (normally TLS) connection until the peer closes it, spawning
/// `handler` for each CONNECT stream.
pub async fn serve<IO, H, F>(io: IO, settings: &Settings, handler: H) -> Result<(), HboneError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Fn(ConnectRequest) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connection = h2::server::Builder::new()
        .initial_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_frame_size(settings.max_frame_size)
        .max_concurrent_streams(settings.max_streams_per_connection as u32)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(HboneError::Handshake)?;
    while let Some(accepted) = connection.accept().await {
        let (request, mut respond) = accepted.map_err(HboneError::Connection)?;
        let authority = request.uri().authority().map(ToString::to_string);
        match (request.method(), authority) {
            (&Method::CONNECT, Some(authority)) => {
                let (parts, recv) = request.into_parts();
                tokio::spawn(handler(ConnectRequest { authority, headers: parts.headers, respond, recv }));
            }
            _ => {
                let status = if request.method() == Method::CONNECT {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::METHOD_NOT_ALLOWED
                };
                let response = Response::builder().status(status).body(()).expect("static response is valid");
                let _ = respond.send_response(response, true);
            }
        }
    }
    Ok(())
}
