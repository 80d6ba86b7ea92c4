//! TCP through the waypoint: the port's first TCP route whose match holds, a cluster by weight,
//! an endpoint by the load balancer, then bytes relayed both ways (`ambit_common::relay`): a
//! half-close passed on as a half-close, a reset as a reset (TCP RST to a plaintext endpoint,
//! RST_STREAM to an HBONE one or to the client's tunnel), and both sides reset once the cluster's
//! `connectionPool.tcp.idleTimeout` passes without a byte either way.
//! No route, no endpoint, a full connection breaker or a failed connect close the stream.

use std::{sync::Arc, time::Duration};

use ambit_common::relay::{Duplex, RelayOutcome, relay as relay_bytes, relay_with_idle_timeout};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Downstream, Waypoint};
use crate::{
    lb::{LbContext, Pick},
    outlier::Outcome,
    route::{Source, pick_weighted},
    upstream::connect::Connected,
};

/// Relays `io` (whose first bytes, already read, are `prefix`) to an endpoint of the route's
/// cluster.
pub async fn relay<IO: Duplex + 'static>(wp: Arc<Waypoint>, down: Downstream, io: IO, prefix: Bytes) {
    crate::stats::inc(&wp.stats.tcp_connections);
    let snapshot = wp.config.current();
    let refuse = |reason: &str| tracing::warn!(peer = %down.peer, destination = %down.destination, "TCP connection closed: {reason}");
    let Some(service) = snapshot.service(down.destination) else { return refuse("no service port (NR)") };
    let source = Source { address: down.peer.ip(), identity: down.identity.clone() };
    let Some((index, route)) = service.router.select_tcp(&source, down.destination.ip()) else {
        return refuse("no TCP route matched (NR)");
    };
    let Some(picked) = pick_weighted(&route.clusters, crate::rng::below) else {
        return refuse("no cluster has weight");
    };
    let Some(position) = route.clusters.iter().position(|c| std::ptr::eq(c, picked)) else { return };
    let cluster = service.tcp[index][position].clone();
    drop(snapshot);
    let lb = LbContext { request: None, peer: down.peer, local: down.local };
    let Some(Pick { index: endpoint, .. }) = cluster.pick(&lb, &[], false) else {
        return refuse(&format!("cluster {} has no endpoint in use (UH)", cluster.name));
    };
    let Some(target) = cluster.target(endpoint).cloned() else { return };
    let Some(slot) = cluster.breaker.connection(&cluster.limits) else {
        cluster.breaker.connection_overflow();
        return refuse(&format!("cluster {}: maxConnections reached (UO)", cluster.name));
    };
    let upstream = match wp.connector.connect_stream(&target, cluster.limits.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            cluster.record(endpoint, Outcome::ConnectFailed);
            return refuse(&format!("cluster {}: {e} (UF)", cluster.name));
        }
    };
    cluster.record(endpoint, Outcome::Connected);
    let idle = cluster.limits.tcp_idle_timeout;
    let outcome = match upstream {
        Connected::Tcp(tcp) => relay_to(io, tcp, &prefix, idle).await,
        Connected::Hbone(stream) => relay_to(io, stream, &prefix, idle).await,
    };
    drop(slot);
    let Some(outcome) = outcome else {
        return refuse("the upstream closed before the first bytes were passed on");
    };
    tracing::debug!(peer = %down.peer, upstream = %target.address, end = ?outcome.end,
        sent = outcome.bytes_from_source, received = outcome.bytes_to_source, "TCP connection relayed");
}

/// Passes `prefix` (bytes the client sent before the route was chosen) to `upstream`, then relays
/// both ways; a reset on either side is passed on as the other side's kind of reset, and both
/// are reset after `idle` without a byte either way. `None`: the upstream closed before taking
/// the prefix.
async fn relay_to<D, U>(io: D, mut upstream: U, prefix: &[u8], idle: Option<Duration>) -> Option<RelayOutcome>
where
    D: Duplex + 'static,
    U: Duplex + AsyncWrite + Unpin + 'static,
{
    if !prefix.is_empty() && upstream.write_all(prefix).await.is_err() {
        return None;
    }
    Some(match idle {
        Some(idle) => relay_with_idle_timeout(io, upstream, idle).await,
        None => relay_bytes(io, upstream).await,
    })
}
