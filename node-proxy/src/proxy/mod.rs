//! The node proxy's data path for enrolled pods: one accept loop per in-pod listener, one task per
//! connection. Deciding where a connection goes is separate from carrying it (`relay`).
//!
//! For now captured connections are carried as plain TCP from inside the pod's own network
//! namespace; HBONE (mTLS tunnelling between node proxies) replaces the carrying step later.

mod hbone;
mod inbound;
mod listener;
mod outbound;
pub(crate) mod relay;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

pub(crate) use listener::{ListenerRole, spawn_accept_loop};

use crate::{
    capture::Capture,
    netns::Netns,
    records::{PodRef, Recorder},
};

/// What every connection handler needs, shared by all pods.
pub(crate) struct ProxyContext {
    pub(crate) capture: Arc<Capture>,
    pub(crate) records: Recorder,
    pub(crate) connect_timeout: Duration,
}

/// The enrolled pod a listener serves.
pub(crate) struct PodContext {
    pub(crate) pod: PodRef,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: Netns,
}

/// Ports of the proxy's own in-pod listeners: never a valid original destination (a connection
/// "to" them would be relayed back into the proxy forever).
fn is_proxy_port(port: u16) -> bool {
    use ambit_ebpf_types::{HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
    [OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, HBONE_PORT].contains(&port)
}
