//! A connection between two pods enrolled on this node (`--same-node local`, the default): the
//! node proxy holds both ends, so it hands the connection from the source pod's side to the
//! destination pod's side itself instead of tunnelling it to its own HBONE listener. Everything
//! the destination side of a tunnel would check still applies, on the identity the source pod
//! holds: the waypoint-bound rule and AuthorizationPolicy, re-checked on every configuration
//! change (`live.rs`); PeerAuthentication treats it as mutual TLS, since the source's identity
//! is known rather than claimed. The bytes never leave the node proxy: no TLS, no HTTP/2, two
//! socket hops fewer. Both pods get a connection record, with `transport: node_local`.
//! (ztunnel had the same shortcut for node-local destinations, with its RBAC applied.)

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use ambit_common::{identity::SpiffeId, relay::reset_tcp};
use tokio::net::TcpStream;

use super::{
    Hbone, PodContext, ProxyContext,
    connect::{self, AppPeer},
};
use crate::{
    mesh::{Mesh, MeshWorkload},
    policy::{ConnectionAttrs, Decision},
    records::{Closing, Direction, OpenConnection, Outcome, Transport},
};

/// The pods enrolled on this node, by IP: where a same-node hand-over finds its destination.
#[derive(Default)]
pub(crate) struct LocalPods(RwLock<HashMap<Ipv4Addr, Arc<PodContext>>>);

impl LocalPods {
    pub(crate) fn insert(&self, pod: Arc<PodContext>) {
        self.0.write().expect("local pods lock").insert(pod.ip, pod);
    }

    /// Forgets `pod`, unless its IP already belongs to a pod enrolled since.
    pub(crate) fn remove(&self, pod: &Arc<PodContext>) {
        let mut pods = self.0.write().expect("local pods lock");
        if pods.get(&pod.ip).is_some_and(|current| Arc::ptr_eq(current, pod)) {
            pods.remove(&pod.ip);
        }
    }

    /// The pod enrolled here at `ip`, if it is the workload `uid` the configuration says is
    /// there (a pod gone and its address reused by another is left to the tunnel's checks).
    pub(crate) fn get(&self, ip: std::net::IpAddr, uid: &str) -> Option<Arc<PodContext>> {
        let std::net::IpAddr::V4(ip) = ip else { return None };
        let pods = self.0.read().expect("local pods lock");
        pods.get(&ip).filter(|pod| pod.pod.uid == uid).cloned()
    }
}

/// The two ends of a hand-over: the connection `client` (at `peer`) that `source` made, to
/// `workload`'s pod `destination` at `target`.
pub(super) struct HandOver<'a> {
    pub(super) source: &'a PodContext,
    pub(super) client: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) destination: &'a PodContext,
    pub(super) workload: &'a MeshWorkload,
    pub(super) target: SocketAddr,
}

/// Authorizes the hand-over as the destination's side of a tunnel would, connects to the app
/// inside the destination pod (which sees the client's own address) and relays until either
/// side ends or a configuration change denies it. The destination's record is kept here; the
/// source's (`outbound`) gets the same identities and transport, and the returned closing. A
/// source without an identity yet is refused before the destination hears of it, as it would
/// be before a tunnel.
pub(super) async fn hand_over(
    ctx: &ProxyContext,
    hbone: &Hbone,
    mesh: &Mesh,
    outbound: &mut OpenConnection,
    to: HandOver<'_>,
) -> Closing {
    let HandOver { source, client, peer, destination, workload, target } = to;
    outbound.transport = Transport::NodeLocal;
    let (source_id, destination_id) = match identities(mesh, hbone, source, workload) {
        Ok(ids) => ids,
        Err(error) => return refuse(&client, Outcome::ConnectFailed, error),
    };
    let mut inbound = ctx.records.open(Direction::Inbound, destination.pod.clone(), peer, target);
    inbound.transport = Transport::NodeLocal;
    for record in [&mut *outbound, &mut inbound] {
        record.source_identity = Some(source_id.to_string());
        record.destination_identity = Some(destination_id.to_string());
    }
    let attrs = ConnectionAttrs::new(peer.ip(), Some(source_id.as_str()), target);
    let closing = match mesh.authorize(workload, &attrs, ctx.trust_domain()) {
        Decision::Deny { by } => refuse(&client, Outcome::Denied, by),
        Decision::Allow { .. } => {
            let timeout = ctx.connect_timeout;
            match connect::to_app(&ctx.capture, &destination.netns, target, AppPeer::Exact(peer), timeout).await {
                Ok((app, _registration)) => ctx.live.relay(&destination.pod.uid, attrs, client, app).await,
                Err(e) => refuse(&client, Outcome::ConnectFailed, format!("connect {target}: {e}")),
            }
        }
    };
    ctx.records.close(inbound, closing.clone());
    closing
}

/// The source pod's identity and the one the destination workload holds.
fn identities(
    mesh: &Mesh,
    hbone: &Hbone,
    source: &PodContext,
    workload: &MeshWorkload,
) -> Result<(SpiffeId, SpiffeId), String> {
    let source_id = source
        .identity(mesh, hbone)
        .ok_or("the control plane does not know this pod yet: no identity to authorize it with")?;
    let w = &workload.workload;
    let destination_id = SpiffeId::new(&hbone.trust_domain, &w.namespace, &w.service_account)
        .map_err(|e| format!("workload {}: {e}", workload.uid))?;
    Ok((source_id, destination_id))
}

/// Resets the client (as a refused tunnel does) and says why.
fn refuse(client: &TcpStream, outcome: Outcome, error: impl ToString) -> Closing {
    reset_tcp(client);
    Closing::failed(outcome, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{netns::Netns, records::PodRef};

    fn pod(uid: &str, ip: [u8; 4]) -> Arc<PodContext> {
        Arc::new(PodContext {
            pod: PodRef { namespace: "ns".into(), name: uid.into(), uid: uid.into() },
            ip: ip.into(),
            netns: Netns::current().expect("own network namespace"),
            identity: std::sync::Mutex::default(),
        })
    }

    #[test]
    fn a_destination_is_handed_over_only_while_enrolled_and_only_as_the_workload_configured_there() {
        let pods = LocalPods::default();
        let (a, ip) = (pod("uid-a", [10, 1, 0, 2]), "10.1.0.2".parse().unwrap());
        pods.insert(a.clone());
        assert!(pods.get(ip, "uid-a").is_some_and(|p| Arc::ptr_eq(&p, &a)));
        assert!(pods.get(ip, "uid-other").is_none(), "the configuration names another pod at that address");
        assert!(pods.get("10.1.0.3".parse().unwrap(), "uid-a").is_none());
        assert!(pods.get("fd00::2".parse().unwrap(), "uid-a").is_none());

        // The address is reused by a pod enrolled before the old one's removal arrives: the old
        // removal leaves the new pod alone.
        let b = pod("uid-b", [10, 1, 0, 2]);
        pods.insert(b.clone());
        pods.remove(&a);
        assert!(pods.get(ip, "uid-b").is_some_and(|p| Arc::ptr_eq(&p, &b)));
        pods.remove(&b);
        assert!(pods.get(ip, "uid-b").is_none());
    }
}
