//! TLS for tonic without tonic's own TLS features: a client connector (TCP + tokio-rustls) and a
//! server incoming stream, both driven by the rustls configurations of [`super::tls`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint, Uri, server::Connected, server::TcpConnectInfo};

use super::IdentityError;

/// A handshake not done by then is dropped (a client that connects and sends nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past this, accepting waits for one to finish.
const MAX_HANDSHAKES: usize = 1024;
/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// A tonic Channel over TLS with `config` (TCP + tokio-rustls). Keepalives, timeouts, TCP_NODELAY
/// and TCP keepalive are taken from `endpoint`; its URI gives the address (`https://host:port`;
/// the scheme's default port when none). The server's certificate is checked by `config`'s
/// verifier, which ignores the host name (SPIFFE ids are not names).
pub async fn tls_channel(endpoint: Endpoint, config: Arc<rustls::ClientConfig>) -> Result<Channel, IdentityError> {
    let connector = Connector {
        tls: TlsConnector::from(config),
        nodelay: endpoint.get_tcp_nodelay(),
        keepalive: tcp_keepalive(&endpoint),
    };
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| IdentityError::Connect { endpoint: endpoint.uri().to_string(), reason: error_chain(&e) })
}

fn tcp_keepalive(endpoint: &Endpoint) -> Option<socket2::TcpKeepalive> {
    let time = endpoint.get_tcp_keepalive()?;
    let mut keepalive = socket2::TcpKeepalive::new().with_time(time);
    if let Some(interval) = endpoint.get_tcp_keepalive_interval() {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(retries) = endpoint.get_tcp_keepalive_retries() {
        keepalive = keepalive.with_retries(retries);
    }
    Some(keepalive)
}

/// "a: b: c" from an error and its sources, without repeating a message a wrapper already shows;
/// a certificate our verifier refused is reported by its own message alone.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let chain = || std::iter::successors(Some(e), |e| e.source());
    let refused = chain().filter_map(|e| e.downcast_ref::<io::Error>()).find_map(IdentityError::from_handshake_error);
    if let Some(refused) = refused {
        return format!("TLS handshake failed: {refused}");
    }
    crate::errors::error_chain(e)
}

#[derive(Clone)]
struct Connector {
    tls: TlsConnector,
    nodelay: bool,
    keepalive: Option<socket2::TcpKeepalive>,
}

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = host_port(&uri)?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(this.nodelay)?;
            if let Some(keepalive) = &this.keepalive {
                socket2::SockRef::from(&tcp).set_tcp_keepalive(keepalive)?;
            }
            // The verifier ignores the name; the peer IP sends no SNI.
            let name = ServerName::IpAddress(tcp.peer_addr()?.ip().into());
            let tls = this.tls.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

fn host_port(uri: &Uri) -> io::Result<(String, u16)> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in endpoint {uri}"));
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        (None, _) => return Err(invalid("no port")),
    };
    Ok((host.to_owned(), port))
}

/// An incoming-connection stream for `tonic::transport::Server::serve_with_incoming_shutdown`:
/// accepts TCP on `listener` and completes TLS with `config`, handshakes running concurrently
/// with a timeout. A failed handshake or accept is logged and skipped: the stream never ends
/// and never yields an error. Requests see the TCP addresses (`Request::remote_addr`).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsStream, io::Error>> + Send + 'static {
    TlsIncoming { listener, acceptor: TlsAcceptor::from(config), handshakes: FuturesUnordered::new(), paused: None }
}

struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: FuturesUnordered<BoxFuture<'static, Option<TlsStream>>>,
    paused: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TlsIncoming {
    fn handshake(&self, tcp: TcpStream, remote: SocketAddr) -> BoxFuture<'static, Option<TlsStream>> {
        let acceptor = self.acceptor.clone();
        Box::pin(async move {
            let info = TcpConnectInfo { local_addr: tcp.local_addr().ok(), remote_addr: Some(remote) };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(%remote, error = %e, "could not set TCP_NODELAY");
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(inner)) => Some(TlsStream { inner, info }),
                // A health check or port scan: connected and closed without a ClientHello.
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%remote, "connection closed before the TLS handshake");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(%remote, error = %error_chain(&e), "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::warn!(%remote, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                    None
                }
            }
        })
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        'poll: loop {
            // Polling the pause registers for its wake-up; a new pause is polled on the next turn.
            if this.paused.as_mut().is_some_and(|pause| pause.as_mut().poll(cx).is_ready()) {
                this.paused = None;
            }
            while this.paused.is_none() && this.handshakes.len() < MAX_HANDSHAKES {
                match this.listener.poll_accept(cx) {
                    Poll::Ready(Ok((tcp, remote))) => {
                        let handshake = this.handshake(tcp, remote);
                        this.handshakes.push(handshake);
                    }
                    Poll::Ready(Err(e)) if is_connection_error(&e) => {
                        tracing::debug!(error = %e, "accept failed for one connection");
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(
                            error = %e, pause = ?ACCEPT_ERROR_PAUSE,
                            "accept failed; pausing (out of file descriptors?)"
                        );
                        this.paused = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                        continue 'poll;
                    }
                    Poll::Pending => break,
                }
            }
            return match this.handshakes.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(stream))) => Poll::Ready(Some(Ok(stream))),
                // Failed and logged: look for the next.
                Poll::Ready(Some(None)) => continue 'poll,
                // The listener, a handshake or the pause wakes us.
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            };
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A server-side TLS connection from [`tls_incoming`].
pub struct TlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl TlsStream {
    /// The TCP stream and the rustls connection (e.g. `peer_certificates()`, `alpn_protocol()`).
    pub fn get_ref(&self) -> (&TcpStream, &rustls::ServerConnection) {
        self.inner.get_ref()
    }
}

impl Connected for TlsStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("remote_addr", &self.info.remote_addr).finish_non_exhaustive()
    }
}
