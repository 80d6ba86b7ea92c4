//! TCP through the waypoint: the port's first TCP route whose match holds, a cluster by weight,
//! an endpoint by the load balancer, then bytes relayed both ways (`ambit_common::relay`): a
//! half-close passed on as a half-close, a reset as a reset (TCP RST to a plaintext endpoint,
//! RST_STREAM to an HBONE one or to the client's tunnel), and both sides reset once the cluster's
//! `connectionPool.tcp.idleTimeout` passes without a byte either way.
//! No route, no endpoint, a full connection breaker or a failed connect close the stream. Every
//! connection leaves a record (`/connections`): bytes each way and how it ended, or Envoy's flag
//! for why it was refused.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ambit_common::relay::{Duplex, RelayEnd, RelayOutcome, relay_with_idle_timeout};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Downstream, Waypoint};
use crate::{
    lb::{LbContext, Pick},
    outcome::{ResponseFlag, ResponseFlags},
    outlier::Outcome,
    records::ConnectionRecord,
    route::{Source, pick_weighted},
    upstream::connect::Connected,
};

/// Relays `io` (whose first bytes, already read, are `prefix`) to an endpoint of the route's
/// cluster, and records the connection when it ends.
pub async fn relay<IO: Duplex + 'static>(wp: Arc<Waypoint>, down: Downstream, io: IO, prefix: Bytes) {
    crate::stats::inc(&wp.stats.tcp_connections);
    let started = (Instant::now(), SystemTime::now());
    let mut record = ConnectionRecord {
        start_unix_ms: started.1.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        source_identity: down.identity.as_ref().map(|id| id.as_str().to_owned()),
        source_address: String::from(&*down.peer_text),
        destination: String::from(&*down.destination_text),
        ..Default::default()
    };
    match route_and_relay(&wp, &down, io, prefix, &mut record).await {
        Ok(outcome) => {
            record.bytes_from_source = outcome.bytes_from_source;
            record.bytes_to_source = outcome.bytes_to_source;
            record.end = match outcome.end {
                RelayEnd::Completed => "completed",
                RelayEnd::SourceReset => "sourceReset",
                RelayEnd::UpstreamReset => "upstreamReset",
                RelayEnd::IdleTimeout => "idleTimeout",
                RelayEnd::Cancelled => "cancelled",
            };
            record.response_flags = ResponseFlags::NONE.to_string();
            record.detail = outcome.error.map(|e| e.to_string());
        }
        Err(Refused { flag, detail }) => {
            tracing::warn!(peer = %down.peer, destination = %down.destination, "TCP connection closed: {detail}");
            record.end = "refused";
            record.response_flags = ResponseFlags::NONE.with(flag).to_string();
            record.detail = Some(detail);
        }
    }
    record.duration_ms = started.0.elapsed().as_millis() as u64;
    wp.records.push_connection(record);
}

/// Why a connection was closed without being relayed: Envoy's flag, and what happened.
struct Refused {
    flag: ResponseFlag,
    detail: String,
}

fn refused(flag: ResponseFlag, detail: impl Into<String>) -> Refused {
    Refused { flag, detail: detail.into() }
}

/// The port's TCP route, a cluster by weight, an endpoint by its load balancer, a connection
/// within the breaker, then the relay; `record` learns the cluster and the endpoint on the way.
async fn route_and_relay<IO: Duplex + 'static>(
    wp: &Waypoint,
    down: &Downstream,
    io: IO,
    prefix: Bytes,
    record: &mut ConnectionRecord,
) -> Result<RelayOutcome, Refused> {
    let no_route = ResponseFlag::NoRouteFound;
    let snapshot = wp.config.current();
    let service = snapshot.service(down.destination).ok_or_else(|| refused(no_route, "no service port"))?;
    let source = Source { address: down.peer.ip(), identity: down.identity.clone() };
    let (index, route) = service
        .router
        .select_tcp(&source, down.destination.ip())
        .ok_or_else(|| refused(no_route, "no TCP route matched"))?;
    let picked =
        pick_weighted(&route.clusters, crate::rng::below).ok_or_else(|| refused(no_route, "no cluster has weight"))?;
    let position =
        route.clusters.iter().position(|c| std::ptr::eq(c, picked)).ok_or_else(|| refused(no_route, "no cluster"))?;
    let cluster = service.tcp[index][position].clone();
    drop(snapshot);
    record.cluster = Some(cluster.name.clone());
    let lb = LbContext { request: None, peer: down.peer, local: down.local };
    let no_endpoint =
        || refused(ResponseFlag::NoHealthyUpstream, format!("cluster {} has no endpoint in use", cluster.name));
    let Pick { index: endpoint, .. } = cluster.pick(&lb, &[], false).ok_or_else(no_endpoint)?;
    let target = cluster.target(endpoint).cloned().ok_or_else(no_endpoint)?;
    record.upstream_host = Some(target.address.to_string());
    let Some(slot) = cluster.breaker.connection(&cluster.limits) else {
        cluster.breaker.connection_overflow();
        return Err(refused(
            ResponseFlag::UpstreamOverflow,
            format!("cluster {}: maxConnections reached", cluster.name),
        ));
    };
    let upstream = match wp.connector.connect_stream(&target, cluster.limits.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            cluster.record(endpoint, Outcome::ConnectFailed);
            return Err(refused(ResponseFlag::UpstreamConnectionFailure, format!("cluster {}: {e}", cluster.name)));
        }
    };
    cluster.record(endpoint, Outcome::Connected);
    let idle = cluster.limits.tcp_idle_timeout;
    let outcome = match upstream {
        Connected::Tcp(tcp) => relay_to(io, tcp, &prefix, idle).await,
        Connected::Hbone(stream) => relay_to(io, stream, &prefix, idle).await,
    };
    drop(slot);
    outcome.ok_or_else(|| {
        refused(
            ResponseFlag::UpstreamConnectionTermination,
            "the upstream closed before the first bytes were passed on",
        )
    })
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
    Some(relay_with_idle_timeout(io, upstream, idle).await)
}
