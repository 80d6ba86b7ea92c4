//! A connection an enrolled pod made, captured at connect(): find where it was going, decide how
//! to get there (`plan`), and carry it — over HBONE to a workload in the mesh or to the waypoint
//! it is bound to (handed over inside the proxy when that workload is a pod enrolled on this
//! node, `local.rs`), as plain TCP to anything else — always from inside the pod's own network
//! namespace.

use std::net::SocketAddr;

use ambit_common::{
    errors::error_chain,
    identity::{SpiffeId, tls::hbone_client_config},
    relay::{relay, reset_tcp},
};
use ambit_ebpf_types::HBONE_PORT;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{
    Hbone, PodContext, PoolKey, ProxyContext, connect, is_proxy_port,
    local::{self, HandOver},
    plan::{Plan, plan},
};
use crate::{
    mesh::{Mesh, MeshWorkload},
    records::{Closing, Direction, OpenConnection, Outcome, Transport},
};

pub(super) async fn handle(ctx: &ProxyContext, pod: &PodContext, client: TcpStream, peer: SocketAddr) {
    let Some(destination) = ctx.capture.take_original_destination(peer) else {
        // Someone connected to podIP:15001 directly, or the map lost the entry.
        let conn = ctx.records.open(Direction::Outbound, pod.pod.clone(), peer, client.local_addr().unwrap_or(peer));
        reset_tcp(&client);
        ctx.records.close(
            conn,
            Closing::failed(Outcome::NoOriginalDestination, "no original destination recorded for this client"),
        );
        return;
    };
    let mut conn = ctx.records.open(Direction::Outbound, pod.pod.clone(), peer, destination);
    if is_proxy_port(destination.port()) {
        reset_tcp(&client);
        ctx.records.close(conn, Closing::failed(Outcome::LoopRefused, "destination is a node-proxy port"));
        return;
    }
    let mesh = ctx.mesh.borrow().clone();
    let closing = match plan(&mesh, &pod.pod.uid, destination, |n| ctx.pick(n)) {
        Plan::Hbone { target, workload } => {
            let to = TunnelTo { dial: SocketAddr::new(target.ip(), HBONE_PORT), peer: &workload, authority: target };
            match (&ctx.hbone, ctx.hand_over_to(target.ip(), &workload)) {
                (Some(hbone), Some(destination)) => {
                    let to =
                        HandOver { source: pod, client, peer, destination: &destination, workload: &workload, target };
                    local::hand_over(ctx, hbone, &mesh, &mut conn, to).await
                }
                (Some(hbone), None) => hbone_from_pod(ctx, hbone, pod, client, &mut conn, &mesh, to).await,
                (None, _) => plain(ctx, pod, client, &mut conn, target, "no control plane: HBONE unavailable").await,
            }
        }
        Plan::Waypoint { waypoint, instance, target, authority } => {
            conn.waypoint = Some(waypoint);
            let to = TunnelTo { dial: target, peer: &instance, authority };
            match &ctx.hbone {
                Some(hbone) => hbone_from_pod(ctx, hbone, pod, client, &mut conn, &mesh, to).await,
                // Only a control plane binds waypoints, and with one there is HBONE; refuse
                // rather than go around the waypoint if that ever changes.
                None => refuse(&client, Outcome::HboneUnavailable, "a waypoint is reached only over HBONE"),
            }
        }
        Plan::Passthrough { target, reason } => plain(ctx, pod, client, &mut conn, target, reason.as_str()).await,
        Plan::NoEndpoints { service } => {
            refuse(&client, Outcome::NoEndpoints, format!("service {service} has no ready endpoints"))
        }
        Plan::NoWaypoint(e) => refuse(&client, Outcome::NoWaypoint, e),
    };
    ctx.records.close(conn, closing);
}

/// HBONE from `pod`, with its identity.
async fn hbone_from_pod(
    ctx: &ProxyContext,
    hbone: &Hbone,
    pod: &PodContext,
    client: TcpStream,
    conn: &mut OpenConnection,
    mesh: &Mesh,
    to: TunnelTo<'_>,
) -> Closing {
    match pod.identity(mesh, hbone) {
        Some(source) => tunnel(ctx, hbone, pod, client, conn, source, to).await,
        None => refuse(
            &client,
            Outcome::ConnectFailed,
            "the control plane does not know this pod yet: no identity to tunnel with",
        ),
    }
}

/// Where an HBONE tunnel goes: the workload that terminates it (the destination itself, or a
/// waypoint instance), dialled at `dial` and expected to prove its identity, and the
/// `authority` its CONNECT asks for.
struct TunnelTo<'a> {
    dial: SocketAddr,
    peer: &'a MeshWorkload,
    authority: SocketAddr,
}

fn refuse(client: &TcpStream, outcome: Outcome, error: impl ToString) -> Closing {
    reset_tcp(client);
    Closing::failed(outcome, error)
}

/// Plain TCP to `target`: a destination outside the mesh.
async fn plain(
    ctx: &ProxyContext,
    pod: &PodContext,
    client: TcpStream,
    conn: &mut OpenConnection,
    target: SocketAddr,
    reason: &'static str,
) -> Closing {
    conn.passthrough_reason = Some(reason);
    match connect::from_pod(&pod.netns, target, ctx.connect_timeout).await {
        Ok(upstream) => relay(client, upstream).await.into(),
        Err(e) => refuse(&client, Outcome::ConnectFailed, format!("connect {target}: {e}")),
    }
}

/// HBONE to `to.dial`: mutual TLS presenting `source`, expecting the identity of the workload
/// there, then an HTTP/2 CONNECT stream for `to.authority` on a pooled connection.
async fn tunnel(
    ctx: &ProxyContext,
    hbone: &Hbone,
    pod: &PodContext,
    client: TcpStream,
    conn: &mut OpenConnection,
    source: SpiffeId,
    to: TunnelTo<'_>,
) -> Closing {
    conn.transport = Transport::Hbone;
    conn.source_identity = Some(source.to_string());
    let peer = &to.peer.workload;
    let expected = match SpiffeId::new(&hbone.trust_domain, &peer.namespace, &peer.service_account) {
        Ok(id) => id,
        Err(e) => return refuse(&client, Outcome::ConnectFailed, format!("workload {}: {e}", to.peer.uid)),
    };
    conn.destination_identity = Some(expected.to_string());
    let cert = match hbone.certs.get(&source).await {
        Ok(cert) => cert,
        Err(e) => return refuse(&client, Outcome::ConnectFailed, e),
    };
    let key = PoolKey {
        source_ip: pod.ip,
        source: source.clone(),
        destination: expected.clone(),
        destination_ip: to.dial.ip(),
    };
    let tls = TlsConnector::from(hbone_client_config(&cert, &hbone.certs.bundle(), &expected));
    let (dial, timeout) = (to.dial, ctx.connect_timeout);
    let connect = || async move {
        let tcp = connect::from_pod(&pod.netns, dial, timeout).await?;
        let name = ServerName::IpAddress(dial.ip().into());
        match tokio::time::timeout(timeout, tls.connect(name, tcp)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    };
    match hbone.pool.open(&key, to.authority, connect).await {
        Ok(stream) => relay(client, stream).await.into(),
        Err(e) => {
            let outcome = if matches!(e, ambit_common::hbone::HboneError::Refused { status: 403, .. }) {
                Outcome::Denied
            } else {
                Outcome::ConnectFailed
            };
            let through = conn.waypoint.as_ref().map(|w| format!(" through waypoint {w}")).unwrap_or_default();
            let error = format!("HBONE to {}{through} via {dial} as {source}: {}", to.authority, error_chain(&e));
            refuse(&client, outcome, error)
        }
    }
}
