//! A connection an enrolled pod made, captured at connect(): find where it was going, decide how
//! to get there (`plan`), and carry it — over HBONE to a workload in the mesh, as plain TCP to
//! anything else — always from inside the pod's own network namespace.

use std::{net::SocketAddr, sync::Arc};

use ambit_common::{
    identity::{SpiffeId, tls::hbone_client_config},
    relay::{relay, reset_tcp},
};
use ambit_ebpf_types::HBONE_PORT;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{
    Hbone, PodContext, PoolKey, ProxyContext, connect, is_proxy_port,
    plan::{Plan, plan},
};
use crate::{
    mesh::MeshWorkload,
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
    let closing = match plan(&mesh, destination, |n| ctx.pick(n)) {
        Plan::Hbone { target, workload } => match &ctx.hbone {
            Some(hbone) => match pod.identity(&mesh, hbone) {
                Some(source) => tunnel(ctx, hbone, pod, client, &mut conn, source, target, &workload).await,
                None => refuse(
                    &client,
                    Outcome::ConnectFailed,
                    "the control plane does not know this pod yet: no identity to tunnel with",
                ),
            },
            None => plain(ctx, pod, client, &mut conn, target, "no control plane: HBONE unavailable").await,
        },
        Plan::Passthrough { target, reason } => plain(ctx, pod, client, &mut conn, target, reason.as_str()).await,
        Plan::NoEndpoints { service } => {
            refuse(&client, Outcome::NoEndpoints, format!("service {service} has no ready endpoints"))
        }
    };
    ctx.records.close(conn, closing);
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

/// HBONE to `target` (a workload in the mesh): mutual TLS presenting `source`, expecting the
/// destination workload's identity, then an HTTP/2 CONNECT stream on a pooled connection.
#[expect(clippy::too_many_arguments, reason = "one call site; each argument is a distinct input")]
async fn tunnel(
    ctx: &ProxyContext,
    hbone: &Hbone,
    pod: &PodContext,
    client: TcpStream,
    conn: &mut OpenConnection,
    source: SpiffeId,
    target: SocketAddr,
    destination: &Arc<MeshWorkload>,
) -> Closing {
    conn.transport = Transport::Hbone;
    conn.source_identity = Some(source.to_string());
    let expected = match SpiffeId::new(
        &hbone.trust_domain,
        &destination.workload.namespace,
        &destination.workload.service_account,
    ) {
        Ok(id) => id,
        Err(e) => {
            return refuse(&client, Outcome::ConnectFailed, format!("destination workload {}: {e}", destination.uid));
        }
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
        destination_ip: target.ip(),
    };
    let tls = TlsConnector::from(hbone_client_config(&cert, &hbone.certs.bundle(), &expected));
    let hbone_addr = SocketAddr::new(target.ip(), HBONE_PORT);
    let timeout = ctx.connect_timeout;
    let connect = || async move {
        let tcp = connect::from_pod(&pod.netns, hbone_addr, timeout).await?;
        let name = ServerName::IpAddress(hbone_addr.ip().into());
        match tokio::time::timeout(timeout, tls.connect(name, tcp)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    };
    match hbone.pool.open(&key, target, connect).await {
        Ok(stream) => relay(client, stream).await.into(),
        Err(e) => {
            let outcome = if matches!(e, ambit_common::hbone::HboneError::Refused { status: 403, .. }) {
                Outcome::Denied
            } else {
                Outcome::ConnectFailed
            };
            refuse(&client, outcome, format!("HBONE to {target} via {hbone_addr} as {source}: {}", error_chain(&e)))
        }
    }
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
