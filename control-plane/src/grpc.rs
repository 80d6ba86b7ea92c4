//! The control plane's gRPC port: one server for Discovery and the CA, routed by path, over TLS
//! (or plaintext for debugging and the push tests).
//!
//! tonic is built without its axum router, so [`Router`] is a small hand-written service: the
//! prefix `/ambit.v1.CertificateAuthority/` goes to the generated CA server, everything else to
//! Discovery (which answers unknown methods `UNIMPLEMENTED` itself).

use std::{
    convert::Infallible,
    future::Future,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use ambit_common::{api::v1::certificate_authority_server::CertificateAuthorityServer, identity};
use tokio::net::TcpListener;
use tonic::{
    Status,
    codegen::{Body, BoxFuture, Service, StdError, http},
    transport::{Server, server::TcpIncoming},
};

use crate::{ca::service::CaService, push::DiscoveryService};

/// Paths of the CA service.
pub const CA_PREFIX: &str = "/ambit.v1.CertificateAuthority/";

/// Routes requests to Discovery or the CA.
#[derive(Clone)]
pub struct Router {
    discovery: DiscoveryService,
    ca: Option<CertificateAuthorityServer<CaService>>,
}

impl Router {
    /// `ca`: `None` when this control plane runs without a CA (plaintext, no root configured).
    pub fn new(discovery: DiscoveryService, ca: Option<CaService>) -> Self {
        Self { discovery, ca: ca.map(CertificateAuthorityServer::new) }
    }
}

impl<B> Service<http::Request<B>> for Router
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both services are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(CA_PREFIX) {
            return self.discovery.call(request);
        }
        match &mut self.ca {
            Some(ca) => ca.call(request),
            None => {
                let status = Status::unimplemented(
                    "this control plane runs without a CA (plaintext gRPC and no --ca-dir): start it with --ca-dir",
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// How the port is served.
pub enum Transport {
    /// TLS with this configuration (the control plane's rotating certificate).
    Tls { listener: TcpListener, config: Arc<rustls::ServerConfig> },
    /// Plaintext: `--plaintext-grpc`, and tests of the push protocol.
    Plaintext(TcpIncoming),
}

/// The server settings of the gRPC port.
fn server() -> Server {
    Server::builder()
        // Detect proxies that vanished without closing their connection.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
}

/// Serves `router` until `shutdown` completes and open streams end.
pub async fn serve(
    router: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match transport {
        Transport::Tls { listener, config } => {
            let incoming = identity::grpc::tls_incoming(listener, config);
            server().serve_with_incoming_shutdown(router, incoming, shutdown).await
        }
        Transport::Plaintext(incoming) => server().serve_with_incoming_shutdown(router, incoming, shutdown).await,
    }
}
