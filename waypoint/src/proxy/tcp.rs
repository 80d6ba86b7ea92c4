//! TCP through the waypoint: the port's first TCP route whose match holds, a cluster by weight,
//! an endpoint by the load balancer, then bytes relayed both ways (`ambit_common::relay`).
//! No route, no endpoint, a full connection breaker or a failed connect close the stream.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use ambit_common::relay::{ChunkWrite, Duplex, Reset, relay as relay_bytes};
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{Downstream, Waypoint};
use crate::{
    lb::{LbContext, Pick},
    outlier::Outcome,
    route::{Source, pick_weighted},
    upstream::connect::Io,
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
    let mut upstream = match wp.connector.connect(&target, cluster.limits.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            cluster.record(endpoint, Outcome::ConnectFailed);
            return refuse(&format!("cluster {}: {e} (UF)", cluster.name));
        }
    };
    cluster.record(endpoint, Outcome::Connected);
    if !prefix.is_empty() && upstream.write_all(&prefix).await.is_err() {
        return refuse("the upstream closed before the first bytes were passed on");
    }
    let outcome = relay_bytes(io, BoxedDuplex(upstream)).await;
    drop(slot);
    tracing::debug!(peer = %down.peer, upstream = %target.address, end = ?outcome.end,
        sent = outcome.bytes_from_source, received = outcome.bytes_to_source, "TCP connection relayed");
}

/// An upstream connection of any kind as a [`Duplex`]. Its reset is a plain close: the box hides
/// the socket (a TCP RST or an HTTP/2 RST_STREAM) behind it.
struct BoxedDuplex(Box<dyn Io>);

struct BoxedWrite(WriteHalf<Box<dyn Io>>);

impl Duplex for BoxedDuplex {
    type Read = ReadHalf<Box<dyn Io>>;
    type Write = BoxedWrite;

    fn into_split(self) -> (Self::Read, Self::Write) {
        let (read, write) = tokio::io::split(self.0);
        (read, BoxedWrite(write))
    }
}

impl Reset for BoxedWrite {
    fn reset(self) {}
}

impl ChunkWrite for BoxedWrite {}

impl AsyncWrite for BoxedWrite {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
