//! A plaintext connection to an enrolled pod, steered to the in-pod listener by sk_lookup. The
//! accepted socket's local address is the original destination. PeerAuthentication decides
//! whether plaintext is accepted at all (STRICT refuses it), a port bound to a waypoint refuses
//! it too (only the waypoint, over HBONE, may reach it), then L4 authorization; the proxy
//! connects to the app from inside the pod, and capture's getpeername hook shows the app the
//! real client.

use std::net::SocketAddr;

use ambit_common::relay::reset_tcp;
use tokio::net::TcpStream;

use super::{
    PodContext, ProxyContext,
    connect::{self, AppPeer},
    is_proxy_port,
};
use crate::{
    policy::{ConnectionAttrs, plaintext_allowed},
    records::{Closing, Direction, Outcome},
};

pub(super) async fn handle(ctx: &ProxyContext, pod: &PodContext, client: TcpStream, peer: SocketAddr) {
    let destination = match client.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::debug!(error = %e, %peer, "inbound connection vanished before it was handled");
            return;
        }
    };
    let conn = ctx.records.open(Direction::Inbound, pod.pod.clone(), peer, destination);
    if is_proxy_port(destination.port()) {
        reset_tcp(&client);
        ctx.records.close(conn, Closing::failed(Outcome::LoopRefused, "destination is a node-proxy port"));
        return;
    }
    let mesh = ctx.mesh.borrow().clone();
    let attrs = ConnectionAttrs::new(peer.ip(), None, destination);
    // Without a control plane there are no policies: everything is admitted. With one, a pod it
    // has not described yet is refused rather than admitted unchecked.
    let local = mesh.workload_by_uid(&pod.pod.uid).cloned();
    if local.is_none() && ctx.hbone.is_some() {
        reset_tcp(&client);
        let error = "the control plane has not described this pod yet: its policies are unknown";
        ctx.records.close(conn, Closing::failed(Outcome::Denied, error));
        return;
    }
    if let Some(local) = &local {
        if !plaintext_allowed(&local.workload, destination.port()) {
            reset_tcp(&client);
            let error =
                format!("PeerAuthentication STRICT: port {} of this workload accepts only mTLS", destination.port());
            ctx.records.close(conn, Closing::failed(Outcome::Denied, error));
            return;
        }
        // A waypoint-bound port refuses plaintext: the waypoint always arrives over HBONE.
        if let crate::policy::Decision::Deny { by } = mesh.authorize(local, &attrs, ctx.trust_domain()) {
            reset_tcp(&client);
            ctx.records.close(conn, Closing::failed(Outcome::Denied, by));
            return;
        }
    }
    let closing =
        match connect::to_app(&ctx.capture, &pod.netns, destination, AppPeer::Exact(peer), ctx.connect_timeout).await {
            Ok((app, _registration)) => ctx.live.relay(&pod.pod.uid, attrs, client, app).await,
            Err(e) => {
                reset_tcp(&client);
                Closing::failed(Outcome::ConnectFailed, format!("connect {destination}: {e}"))
            }
        };
    ctx.records.close(conn, closing);
}
