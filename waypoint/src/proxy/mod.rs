//! The waypoint's listener side: HBONE in ([`inbound`]), then per CONNECT stream the protocol of
//! the service port (declared, or detected), served as HTTP through the pipeline ([`http`]) or
//! relayed as TCP ([`tcp`]).

pub mod http;
pub mod inbound;
pub mod tcp;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{hbone, identity::SpiffeId};

use crate::{identity::Identity, records::Records, snapshot::ConfigStore, stats::Stats, upstream::Connector};

/// Everything the data path shares.
pub struct Waypoint {
    pub config: ConfigStore,
    pub identity: Identity,
    pub connector: Arc<Connector>,
    pub hbone: hbone::Settings,
    /// Shared with the response bodies in flight: a request's record is written when its
    /// response body ends.
    pub records: Arc<Records>,
    pub stats: Stats,
    /// An upgraded (WebSocket) connection with no byte either way for this long is closed;
    /// `None`: never.
    pub stream_idle_timeout: Option<Duration>,
}

/// Envoy's `stream_idle_timeout` when none is configured, which Istio keeps.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Waypoint {
    /// `hbone_port`: where endpoints' HBONE listeners are (15008).
    pub fn new(
        config: ConfigStore,
        identity: Identity,
        hbone_port: u16,
        stream_idle_timeout: Option<Duration>,
    ) -> Arc<Self> {
        let settings = hbone::Settings::default();
        Arc::new(Self {
            config,
            connector: Connector::new(identity.clone(), settings.clone(), hbone_port),
            identity,
            hbone: settings,
            records: Arc::default(),
            stats: Stats::default(),
            stream_idle_timeout,
        })
    }
}

/// Who sent a stream, and where it was going.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The HBONE peer (the source workload's address, as its node proxy connects from it).
    pub peer: SocketAddr,
    /// The peer's verified SPIFFE identity.
    pub identity: Option<SpiffeId>,
    /// The CONNECT authority: the service VIP and port, or a bound workload's address and port.
    pub destination: SocketAddr,
    /// The waypoint's own address on the connection.
    pub local: SocketAddr,
    /// HTTP/1.1 or HTTP/2, once known.
    pub version: ::http::Version,
    /// `peer` and `destination` as text, formatted once per connection for the access records
    /// of all its requests.
    pub peer_text: Arc<str>,
    pub destination_text: Arc<str>,
}

impl Downstream {
    pub fn new(peer: SocketAddr, identity: Option<SpiffeId>, destination: SocketAddr, local: SocketAddr) -> Self {
        Self {
            peer,
            identity,
            destination,
            local,
            version: ::http::Version::HTTP_11,
            peer_text: peer.to_string().into(),
            destination_text: destination.to_string().into(),
        }
    }
}
