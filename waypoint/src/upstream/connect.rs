//! Connections to an endpoint: plain TCP, or an HBONE stream (mutual TLS with the waypoint's
//! certificate to `<endpoint ip>:15008`, the endpoint's identity expected, then a CONNECT to
//! `<endpoint ip>:<port>` on a pooled HBONE connection). Both within the cluster's connect
//! timeout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{
    hbone::{
        self,
        client::Pool,
        stream::{H2Read, H2Write},
    },
    identity::{SpiffeId, tls::hbone_client_config},
};
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::{
    identity::Identity,
    io::{Joined, joined},
    outcome::ConnectFailure,
};

/// A connected byte stream to an endpoint.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A connection to an endpoint, by kind. Both are [`Duplex`](ambit_common::relay::Duplex)
/// streams whose write half can reset them (a TCP RST, an HTTP/2 RST_STREAM).
pub enum Connected {
    Tcp(TcpStream),
    Hbone(Joined<H2Read, H2Write>),
}

impl Connected {
    pub fn boxed(self) -> Box<dyn Io> {
        match self {
            Self::Tcp(tcp) => Box::new(tcp),
            Self::Hbone(stream) => Box::new(stream),
        }
    }
}

/// How an endpoint is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Plaintext,
    /// HBONE; the endpoint must present this identity.
    Hbone(SpiffeId),
}

/// An endpoint's address and transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: SocketAddr,
    pub transport: Transport,
}

/// Why connecting failed, in Envoy's terms and in words naming the endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub cause: ConnectFailure,
    pub message: String,
}

/// HBONE connections are shared by streams presenting and expecting the same identities to the
/// same address, from the same worker (a connection's task runs on the worker that opened it).
type HboneKey = (usize, SpiffeId, SpiffeId, std::net::IpAddr);

pub struct Connector {
    identity: Identity,
    pool: Pool<HboneKey>,
    /// The HBONE port of endpoints: 15008 (another in tests).
    hbone_port: u16,
}

impl Connector {
    pub fn new(identity: Identity, settings: hbone::Settings, hbone_port: u16) -> Arc<Self> {
        Arc::new(Self { identity, pool: Pool::new(settings), hbone_port })
    }

    /// A byte stream to `target` for an HTTP connection.
    pub async fn connect(&self, target: &Target, timeout: Duration) -> Result<Box<dyn Io>, ConnectError> {
        self.connect_stream(target, timeout).await.map(Connected::boxed)
    }

    /// A connection to `target` that keeps its kind, so a relay can reset it (TCP routes).
    pub async fn connect_stream(&self, target: &Target, timeout: Duration) -> Result<Connected, ConnectError> {
        match tokio::time::timeout(timeout, self.connect_now(target)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError {
                cause: ConnectFailure::Timeout,
                message: format!(
                    "connecting to {} took longer than the cluster's connect timeout {timeout:?}{}",
                    target.address,
                    match target.transport {
                        Transport::Hbone(_) => format!(" (HBONE via port {}: is it blocked?)", self.hbone_port),
                        Transport::Plaintext => String::new(),
                    }
                ),
            }),
        }
    }

    async fn connect_now(&self, target: &Target) -> Result<Connected, ConnectError> {
        let remote = |message: String| ConnectError { cause: ConnectFailure::Remote, message };
        match &target.transport {
            Transport::Plaintext => {
                let tcp = TcpStream::connect(target.address)
                    .await
                    .map_err(|e| remote(format!("connecting to {}: {e}", target.address)))?;
                let _ = tcp.set_nodelay(true);
                Ok(Connected::Tcp(tcp))
            }
            Transport::Hbone(expected) => {
                let Some(cert) = self.identity.cert() else {
                    return Err(ConnectError {
                        cause: ConnectFailure::Local,
                        message: format!(
                            "no certificate for {} yet (or it expired): cannot open HBONE to {}",
                            self.identity.id(),
                            target.address
                        ),
                    });
                };
                let ip = target.address.ip();
                let tls = TlsConnector::from(hbone_client_config(&cert, &self.identity.bundle(), expected));
                let hbone_addr = SocketAddr::new(ip, self.hbone_port);
                let connect = || async move {
                    let tcp = TcpStream::connect(hbone_addr).await?;
                    let _ = tcp.set_nodelay(true);
                    tls.connect(ServerName::IpAddress(ip.into()), tcp).await
                };
                let key = (crate::workers::index(), self.identity.id().clone(), expected.clone(), ip);
                let stream = self.pool.open(&key, target.address, connect).await.map_err(|e| {
                    remote(format!("HBONE to {} via {hbone_addr} (expecting {expected}): {e}", target.address))
                })?;
                Ok(Connected::Hbone(joined(stream)))
            }
        }
    }
}
