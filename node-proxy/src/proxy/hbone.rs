//! Port 15008 of an enrolled pod: HBONE. Mutual TLS with the pod's own identity (the client
//! must present a mesh certificate; its SPIFFE id is the principal policies see), then one
//! HTTP/2 CONNECT stream per tunnelled connection. Each stream is authorized on its own (a port
//! bound to a waypoint admits only that waypoint, then AuthorizationPolicy), then connected to
//! the app inside the pod.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{
    errors::error_chain,
    hbone::server::{ConnectRequest, serve},
    identity::{SpiffeId, WorkloadCert, peer_identity, tls::hbone_server_config},
    relay::reset_tcp,
};
use http::StatusCode;
use rustls::{server::ClientHello, sign::CertifiedKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{
    PodContext, ProxyContext,
    connect::{self, AppPeer},
    is_proxy_port,
};
use crate::{
    mesh::{Mesh, MeshWorkload},
    policy::{ConnectionAttrs, Decision},
    records::{Closing, Direction, Outcome, Transport},
};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Always presents the pod's certificate (each pod has its own 15008 listener).
#[derive(Debug)]
struct PodCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for PodCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

pub(super) async fn handle(ctx: Arc<ProxyContext>, pod: Arc<PodContext>, tcp: TcpStream, peer: SocketAddr) {
    let (ctx_ref, pod_ref) = (&*ctx, &*pod);
    let fail = |outcome, error: String| {
        reset_tcp(&tcp);
        let conn =
            ctx_ref.records.open(Direction::Inbound, pod_ref.pod.clone(), peer, tcp.local_addr().unwrap_or(peer));
        ctx_ref.records.close(conn, Closing::failed(outcome, error));
    };
    let Some(hbone) = &ctx_ref.hbone else {
        return fail(
            Outcome::HboneUnavailable,
            "HBONE needs a control plane (identities); this node proxy runs standalone".into(),
        );
    };
    let mesh = ctx_ref.mesh.borrow().clone();
    let Some(local) = mesh.workload_by_uid(&pod_ref.pod.uid).cloned() else {
        return fail(
            Outcome::TlsFailed,
            "the control plane has not described this pod yet: no identity to present".into(),
        );
    };
    let Some(identity) = pod_ref.identity(&mesh, hbone) else {
        return fail(Outcome::TlsFailed, "this pod has no valid identity".into());
    };
    let cert: WorkloadCert = match hbone.certs.get(&identity).await {
        Ok(cert) => cert,
        Err(e) => return fail(Outcome::TlsFailed, e.to_string()),
    };
    let config = hbone_server_config(Arc::new(PodCert(cert.certified_key())), &hbone.certs.bundle());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let error = format!("TLS handshake: {}", error_chain(&e));
            return record_refusal(ctx_ref, pod_ref, peer, Outcome::TlsFailed, error);
        }
        Err(_) => {
            let error = format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return record_refusal(ctx_ref, pod_ref, peer, Outcome::TlsFailed, error);
        }
    };
    let client = match tls.get_ref().1.peer_certificates().map(peer_identity) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            return record_refusal(ctx_ref, pod_ref, peer, Outcome::TlsFailed, format!("client certificate: {e}"));
        }
        None => {
            let error = "the client presented no certificate".to_owned();
            return record_refusal(ctx_ref, pod_ref, peer, Outcome::TlsFailed, error);
        }
    };
    if let Some(error) = impersonation(&mesh, &hbone.trust_domain, peer, &client) {
        return record_refusal(ctx_ref, pod_ref, peer, Outcome::Denied, error);
    }
    let peer_info = Arc::new(Peer { addr: peer, identity: client, local_identity: identity, local });
    let streams = serve(tls, &hbone.settings, |request| {
        let (ctx, pod, peer) = (ctx.clone(), pod.clone(), peer_info.clone());
        async move { stream(&ctx, &pod, request, &peer).await }
    });
    if let Err(e) = streams.await {
        tracing::debug!(%peer, error = %e, "HBONE connection ended with an error");
    }
}

/// A mesh workload's address presenting a certificate that is not its own: node proxies only
/// tunnel from a pod's address with that pod's identity, so this is a stolen or misused
/// certificate (or a compromised node) and the connection is refused. Sources outside the mesh
/// (no workload at that address) are judged by their certificate alone.
fn impersonation(mesh: &Mesh, trust_domain: &str, peer: SocketAddr, client: &SpiffeId) -> Option<String> {
    let source = &mesh.workload_by_ip(peer.ip())?.workload;
    let expected = SpiffeId::new(trust_domain, &source.namespace, &source.service_account).ok()?;
    (expected != *client).then(|| {
        format!(
            "the client presented {client} from {}, the address of {}/{} whose identity is {expected}: \
             a certificate used by another workload is refused",
            peer.ip(),
            source.namespace,
            source.name
        )
    })
}

fn record_refusal(ctx: &ProxyContext, pod: &PodContext, peer: SocketAddr, outcome: Outcome, error: String) {
    tracing::warn!(pod = %format_args!("{}/{}", pod.pod.namespace, pod.pod.name), %peer, %error, "HBONE connection refused");
    let conn = ctx.records.open(
        Direction::Inbound,
        pod.pod.clone(),
        peer,
        SocketAddr::new(pod.ip.into(), ambit_ebpf_types::HBONE_PORT),
    );
    ctx.records.close(conn, Closing::failed(outcome, error));
}

/// Who is on the other end of an HBONE connection, and who we are on it.
struct Peer {
    addr: SocketAddr,
    identity: SpiffeId,
    local_identity: SpiffeId,
    local: Arc<MeshWorkload>,
}

/// One CONNECT stream: check the target, authorize, connect to the app, relay.
async fn stream(ctx: &ProxyContext, pod: &PodContext, request: ConnectRequest, peer: &Peer) {
    let target: Option<SocketAddr> = request.authority.parse().ok();
    let destination = target.unwrap_or_else(|| SocketAddr::new(pod.ip.into(), 0));
    let mut conn = ctx.records.open(Direction::Inbound, pod.pod.clone(), peer.addr, destination);
    conn.transport = Transport::Hbone;
    conn.source_identity = Some(peer.identity.to_string());
    conn.destination_identity = Some(peer.local_identity.to_string());
    let refuse = |request: ConnectRequest, status, outcome, error: String| {
        request.reject(status);
        Closing::failed(outcome, error)
    };
    let closing = match target {
        None => {
            let error = format!("CONNECT authority {:?} is not ip:port", request.authority);
            refuse(request, StatusCode::BAD_REQUEST, Outcome::ConnectFailed, error)
        }
        Some(t) if t.ip() != std::net::IpAddr::V4(pod.ip) => refuse(
            request,
            StatusCode::BAD_REQUEST,
            Outcome::ConnectFailed,
            format!("CONNECT to {t} arrived at pod {} (HBONE targets the pod it arrives at)", pod.ip),
        ),
        Some(t) if is_proxy_port(t.port()) => {
            refuse(request, StatusCode::BAD_REQUEST, Outcome::LoopRefused, "destination is a node-proxy port".into())
        }
        Some(target) => authorized_stream(ctx, pod, request, peer, target).await,
    };
    ctx.records.close(conn, closing);
}

async fn authorized_stream(
    ctx: &ProxyContext,
    pod: &PodContext,
    request: ConnectRequest,
    peer: &Peer,
    target: SocketAddr,
) -> Closing {
    let attrs = ConnectionAttrs::new(peer.addr.ip(), Some(peer.identity.as_str()), target);
    let mesh = ctx.mesh.borrow().clone();
    let workload = mesh.workload_by_uid(&pod.pod.uid).unwrap_or(&peer.local);
    if let Decision::Deny { by } = mesh.authorize(workload, &attrs, ctx.trust_domain()) {
        request.reject(StatusCode::FORBIDDEN);
        return Closing::failed(Outcome::Denied, by);
    }
    let (app, _registration) =
        match connect::to_app(&ctx.capture, &pod.netns, target, AppPeer::Ip(peer.addr.ip()), ctx.connect_timeout).await
        {
            Ok(connected) => connected,
            Err(e) => {
                request.reject(StatusCode::SERVICE_UNAVAILABLE);
                return Closing::failed(Outcome::ConnectFailed, format!("connect {target}: {e}"));
            }
        };
    let tunnel = match request.accept() {
        Ok(tunnel) => tunnel,
        Err(e) => return Closing::failed(Outcome::SourceReset, e),
    };
    ctx.live.relay(&pod.pod.uid, attrs, tunnel, app).await
}
