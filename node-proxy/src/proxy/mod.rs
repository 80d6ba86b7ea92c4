//! The node proxy's data path for enrolled pods: one accept loop per in-pod listener, one task per
//! connection. Deciding where a connection goes (`plan`) is separate from carrying it.
//!
//! - outbound (`outbound.rs`): to a workload in the mesh, or to the waypoint it or its service
//!   is bound to, over HBONE (mutual TLS with the source pod's identity, HTTP/2 CONNECT,
//!   pooled), anything else as plain TCP;
//! - inbound HBONE (`hbone.rs`, port 15008): TLS with the destination pod's identity, the peer's
//!   identity read from its certificate, the waypoint-bound rule and L4 authorization, then to
//!   the app;
//! - inbound plaintext (`inbound.rs`): PeerAuthentication decides whether it is accepted at all,
//!   then the waypoint-bound rule (which refuses it) and L4 authorization;
//! - same node (`local.rs`): a connection between two pods enrolled here is handed from one
//!   side to the other inside the proxy, authorized as the tunnel's far end would;
//! - live inbound connections are re-authorized on every configuration change (`live.rs`).

mod connect;
mod hbone;
mod inbound;
mod listener;
pub(crate) mod live;
mod local;
mod outbound;
pub(crate) mod plan;

use std::{
    net::Ipv4Addr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ambit_common::{hbone::client::Pool, identity::SpiffeId, workers::Workers};
pub(crate) use listener::{ListenerRole, spawn_accept_loop};
use tokio::sync::watch;

pub(crate) use local::LocalPods;

use crate::{
    capture::Capture,
    certs::CertManager,
    config::SameNode,
    mesh::{Mesh, MeshWorkload},
    netns::Netns,
    records::{PodRef, Recorder},
};

/// A pooled HBONE connection carries streams for one source pod, one pair of identities and one
/// destination IP: it only ever presents and expects the same certificates, from the same
/// source address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) source_ip: Ipv4Addr,
    pub(crate) source: SpiffeId,
    pub(crate) destination: SpiffeId,
    pub(crate) destination_ip: std::net::IpAddr,
}

/// What HBONE needs: identities (from the CA) and the connection pool. Absent in standalone
/// mode, where captured traffic is carried as plain TCP.
pub(crate) struct Hbone {
    pub(crate) certs: Arc<CertManager>,
    pub(crate) pool: Pool<PoolKey>,
    pub(crate) trust_domain: String,
    pub(crate) settings: ambit_common::hbone::Settings,
}

/// What every connection handler needs, shared by all pods.
pub(crate) struct ProxyContext {
    pub(crate) capture: Arc<Capture>,
    pub(crate) records: Recorder,
    pub(crate) connect_timeout: Duration,
    pub(crate) mesh: watch::Receiver<Arc<Mesh>>,
    pub(crate) hbone: Option<Hbone>,
    pub(crate) live: live::LiveConnections,
    /// The pods enrolled on this node, for same-node hand-overs.
    pub(crate) local_pods: LocalPods,
    same_node: SameNode,
    next_endpoint: AtomicUsize,
    /// The threads carrying pods' connections (`ambit_common::workers`).
    workers: Workers,
}

impl ProxyContext {
    pub(crate) fn new(
        capture: Arc<Capture>,
        connect_timeout: Duration,
        mesh: watch::Receiver<Arc<Mesh>>,
        hbone: Option<Hbone>,
        workers: Workers,
        same_node: SameNode,
    ) -> Self {
        Self {
            capture,
            records: Recorder::new(),
            connect_timeout,
            mesh,
            hbone,
            live: live::LiveConnections::default(),
            local_pods: LocalPods::default(),
            same_node,
            next_endpoint: AtomicUsize::new(0),
            workers,
        }
    }

    /// The runtime a newly enrolled pod's listeners (and so all its connections) run on: the
    /// next worker in turn. One pod's connections share a thread: its outbound HBONE
    /// connections (pooled per source pod) are only ever used from it.
    pub(crate) fn runtime_for_pod(&self) -> tokio::runtime::Handle {
        self.workers.next().clone()
    }

    /// The mesh's trust domain (empty without a control plane, where there are no identities).
    pub(crate) fn trust_domain(&self) -> &str {
        self.hbone.as_ref().map_or("", |h| h.trust_domain.as_str())
    }

    /// The pod enrolled here that `workload` (at `ip`) is, when same-node connections are
    /// handed over inside the proxy.
    fn hand_over_to(&self, ip: std::net::IpAddr, workload: &MeshWorkload) -> Option<Arc<PodContext>> {
        match self.same_node {
            SameNode::Local => self.local_pods.get(ip, &workload.uid),
            SameNode::Hbone => None,
        }
    }

    /// Round robin over a service's endpoints (and a waypoint's instances).
    fn pick(&self, endpoints: usize) -> usize {
        self.next_endpoint.fetch_add(1, Ordering::Relaxed) % endpoints.max(1)
    }
}

/// The enrolled pod a listener serves.
pub(crate) struct PodContext {
    pub(crate) pod: PodRef,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: Netns,
    /// The identity whose certificate this pod holds (known once the control plane knows the pod).
    pub(crate) identity: Mutex<HeldIdentity>,
}

/// A pod's hold on its certificate.
#[derive(Default)]
pub(crate) struct HeldIdentity {
    id: Option<SpiffeId>,
    /// Set when the pod is unenrolled: nothing may take a new hold after that.
    released: bool,
}

impl PodContext {
    /// The pod's SPIFFE identity from the control plane's view of it, holding its certificate
    /// from the first time it is known until the pod is unenrolled.
    pub(crate) fn identity(&self, mesh: &Mesh, hbone: &Hbone) -> Option<SpiffeId> {
        let mut held = self.identity.lock().expect("identity lock");
        if held.released {
            return None;
        }
        if let Some(id) = held.id.as_ref() {
            return Some(id.clone());
        }
        let workload = &mesh.workload_by_uid(&self.pod.uid)?.workload;
        let id = SpiffeId::new(&hbone.trust_domain, &workload.namespace, &workload.service_account).ok()?;
        hbone.certs.retain(&id);
        held.id = Some(id.clone());
        Some(id)
    }

    /// Lets go of the pod's certificate (it is unenrolled).
    pub(crate) fn release_identity(&self, hbone: &Hbone) {
        let mut held = self.identity.lock().expect("identity lock");
        held.released = true;
        if let Some(id) = held.id.take() {
            hbone.certs.release(&id);
        }
    }
}

/// Fetches the pod's certificate as soon as the control plane's view names its identity, so the
/// first connection does not wait for the CA. Ends once the identity is held or the pod leaves.
pub(crate) async fn prefetch_identity(
    proxy: Arc<ProxyContext>,
    pod: Arc<PodContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(hbone) = proxy.hbone.as_ref() else { return };
    let mut mesh = proxy.mesh.clone();
    loop {
        let current = mesh.borrow_and_update().clone();
        if pod.identity(&current, hbone).is_some() || *shutdown.borrow() {
            return;
        }
        tokio::select! {
            changed = mesh.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Ports of the proxy's own in-pod listeners: never a valid original destination (a connection
/// "to" them would be relayed back into the proxy forever).
fn is_proxy_port(port: u16) -> bool {
    use ambit_ebpf_types::{HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
    [OUTBOUND_PORT, INBOUND_PLAINTEXT_PORT, HBONE_PORT].contains(&port)
}
