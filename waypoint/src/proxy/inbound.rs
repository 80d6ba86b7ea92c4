//! The HBONE listener (`--listen`, 0.0.0.0:15008): mutual TLS with the waypoint's certificate
//! (the client must present a mesh certificate; its SPIFFE id is the source identity policies
//! and routes see), then HTTP/2 CONNECT streams. Each stream's authority selects the service
//! port: a service's `vip:port`, or `<workload ip>:<port>` for a workload bound to the waypoint;
//! an unknown one is refused with 404.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{
    hbone::server::{ConnectRequest, serve as serve_hbone},
    identity::{SpiffeId, peer_identity, tls::hbone_server_config},
};
use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::{Downstream, Waypoint};
use crate::{io::joined, stats::inc};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts HBONE connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, wp: Arc<Waypoint>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(connection(wp.clone(), tcp, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying shortly (out of file descriptors?)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(wp: Arc<Waypoint>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(peer);
    if wp.identity.cert().is_none() {
        tracing::warn!(%peer, identity = %wp.identity.id(), "HBONE connection refused: no certificate yet (is the CA reachable?)");
        inc(&wp.stats.tls_failures);
        return;
    }
    let config = hbone_server_config(wp.identity.resolver(), &wp.identity.bundle());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            inc(&wp.stats.tls_failures);
            tracing::warn!(%peer, error = %e, "HBONE TLS handshake failed (a client without a mesh certificate?)");
            return;
        }
        Err(_) => {
            inc(&wp.stats.tls_failures);
            tracing::warn!(%peer, "no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let identity = match tls.get_ref().1.peer_certificates().map(peer_identity) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            inc(&wp.stats.tls_failures);
            tracing::warn!(%peer, error = %e, "HBONE client certificate unusable");
            return;
        }
        None => {
            inc(&wp.stats.tls_failures);
            tracing::warn!(%peer, "HBONE client presented no certificate");
            return;
        }
    };
    inc(&wp.stats.hbone_connections);
    wp.stats.worker_connection(crate::workers::index());
    let settings = wp.hbone.clone();
    let result =
        serve_hbone(tls, &settings, |request| stream(wp.clone(), peer, identity.clone(), local, request)).await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HBONE connection ended with an error");
    }
}

/// One CONNECT stream from `peer`: the service port it is for, then HTTP or TCP.
async fn stream(wp: Arc<Waypoint>, peer: SocketAddr, identity: SpiffeId, local: SocketAddr, request: ConnectRequest) {
    inc(&wp.stats.streams);
    let Ok(destination) = request.authority.parse::<SocketAddr>() else {
        tracing::warn!(%peer, authority = %request.authority, "CONNECT authority is not ip:port; refused (400)");
        inc(&wp.stats.streams_refused);
        return request.reject(StatusCode::BAD_REQUEST);
    };
    let down = Downstream::new(peer, Some(identity), destination, local);
    let snapshot = wp.config.current();
    let Some(service) = snapshot.service(destination) else {
        tracing::warn!(peer = %down.peer, %destination, version = snapshot.version,
            "CONNECT to an address neither a service nor a workload bound to this waypoint has (no route table \
             with this VIP and port, no bound workload with this IP: is the destination labelled \
             istio.io/use-waypoint, and does the waypoint's istio.io/waypoint-for admit it?); refused (404)");
        inc(&wp.stats.streams_refused);
        return request.reject(StatusCode::NOT_FOUND);
    };
    drop(snapshot);
    let tunnel = match request.accept() {
        Ok(tunnel) => tunnel,
        Err(e) => {
            tracing::debug!(peer = %down.peer, error = %e, "the HBONE stream ended before it was accepted");
            return;
        }
    };
    super::http::serve_stream(wp, down, service.protocol, joined(tunnel)).await;
}
