//! One record per proxied connection: what tests, the admin API and the access log read.
//! Kept in a bounded ring (the most recent [`Recorder::CAPACITY`]) and logged once, at close.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use ambit_common::relay::{RelayEnd, RelayOutcome};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    /// From an enrolled pod, captured at connect().
    Outbound,
    /// To an enrolled pod, captured by sk_lookup.
    Inbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Both sides closed normally (half-closes included).
    Completed,
    /// The source reset the connection; the reset was passed on upstream.
    SourceReset,
    /// The upstream reset the connection; the reset was passed on to the source.
    UpstreamReset,
    /// The original destination could not be reached; the source was reset.
    ConnectFailed,
    /// Capture recorded no original destination for this client (the connection was reset).
    NoOriginalDestination,
    /// The destination is one of the proxy's own ports: refused to avoid a loop.
    LoopRefused,
    /// Refused by policy: an AuthorizationPolicy, or PeerAuthentication STRICT for plaintext.
    Denied,
    /// The TLS handshake of an HBONE connection failed (certificate, identity, protocol).
    TlsFailed,
    /// The destination is a service without ready endpoints.
    NoEndpoints,
    /// The destination is bound to a waypoint that has no ready instance (or is unknown).
    NoWaypoint,
    /// HBONE needs identities, which only a control plane provides (standalone mode).
    HboneUnavailable,
    /// A live connection closed because a new configuration denies it (a policy, or a waypoint
    /// binding it did not come through).
    Revoked,
    /// No byte moved either way for the relay's idle timeout; both sides were reset.
    IdleTimeout,
}

/// How a connection was carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transport {
    /// Inside an HBONE tunnel (mutual TLS, HTTP/2 CONNECT).
    Hbone,
    /// Between two pods on this node, handed over inside the node proxy (`--same-node local`):
    /// authorized on the source pod's identity, never on the network.
    NodeLocal,
    /// Plain TCP: to a destination outside the mesh, from a source outside it, or without a
    /// control plane.
    Plaintext,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodRef {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionRecord {
    /// Sequence number of the record, in the order connections closed.
    pub(crate) id: u64,
    pub(crate) direction: Direction,
    /// The enrolled pod this proxy acted for (source pod when outbound, destination when inbound).
    pub(crate) pod: PodRef,
    pub(crate) source: SocketAddr,
    pub(crate) original_destination: SocketAddr,
    pub(crate) started_at_unix_ms: u64,
    pub(crate) duration_ms: u64,
    pub(crate) bytes_from_source: u64,
    pub(crate) bytes_to_source: u64,
    pub(crate) outcome: Outcome,
    pub(crate) transport: Transport,
    /// SPIFFE id of the source workload, when proven (mTLS) or known (our own pod, outbound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source_identity: Option<String>,
    /// SPIFFE id the destination proved (outbound HBONE) or holds (inbound). Through a
    /// waypoint: the waypoint instance's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) destination_identity: Option<String>,
    /// The waypoint (`<namespace>/<name>`) an outbound connection was sent through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waypoint: Option<String>,
    /// Why a plaintext outbound connection was not tunnelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) passthrough_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// A connection in progress; [`Recorder::close`] turns it into a record.
pub(crate) struct OpenConnection {
    pub(crate) transport: Transport,
    pub(crate) source_identity: Option<String>,
    pub(crate) destination_identity: Option<String>,
    pub(crate) waypoint: Option<String>,
    pub(crate) passthrough_reason: Option<&'static str>,
    direction: Direction,
    pod: PodRef,
    source: SocketAddr,
    original_destination: SocketAddr,
    started: Instant,
    started_at_unix_ms: u64,
}

/// What a finished connection carried and how it ended.
#[derive(Clone)]
pub(crate) struct Closing {
    pub(crate) bytes_from_source: u64,
    pub(crate) bytes_to_source: u64,
    pub(crate) outcome: Outcome,
    pub(crate) error: Option<String>,
}

impl Closing {
    pub(crate) fn failed(outcome: Outcome, error: impl ToString) -> Self {
        Self { bytes_from_source: 0, bytes_to_source: 0, outcome, error: Some(error.to_string()) }
    }
}

impl From<RelayOutcome> for Closing {
    fn from(relay: RelayOutcome) -> Self {
        let outcome = match relay.end {
            RelayEnd::Completed => Outcome::Completed,
            RelayEnd::SourceReset => Outcome::SourceReset,
            RelayEnd::UpstreamReset => Outcome::UpstreamReset,
            RelayEnd::Cancelled => Outcome::Revoked,
            RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        };
        // A revoked relay's own error is the cancellation; the caller says which policy did it.
        let error = relay.error.map(|e| e.to_string()).filter(|_| outcome != Outcome::Revoked);
        Self { bytes_from_source: relay.bytes_from_source, bytes_to_source: relay.bytes_to_source, outcome, error }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct ConnectionTotals {
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) active: u64,
}

pub(crate) struct Recorder {
    next_id: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    recent: Mutex<VecDeque<ConnectionRecord>>,
}

impl Recorder {
    pub(crate) const CAPACITY: usize = 10_000;

    pub(crate) fn new() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::with_capacity(Self::CAPACITY)),
        }
    }

    pub(crate) fn open(
        &self,
        direction: Direction,
        pod: PodRef,
        source: SocketAddr,
        original_destination: SocketAddr,
    ) -> OpenConnection {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let started_at_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        OpenConnection {
            transport: Transport::Plaintext,
            source_identity: None,
            destination_identity: None,
            waypoint: None,
            passthrough_reason: None,
            direction,
            pod,
            source,
            original_destination,
            started: Instant::now(),
            started_at_unix_ms,
        }
    }

    pub(crate) fn close(&self, conn: OpenConnection, closing: Closing) {
        let mut record = ConnectionRecord {
            id: 0,
            direction: conn.direction,
            pod: conn.pod,
            source: conn.source,
            original_destination: conn.original_destination,
            started_at_unix_ms: conn.started_at_unix_ms,
            duration_ms: conn.started.elapsed().as_millis() as u64,
            bytes_from_source: closing.bytes_from_source,
            bytes_to_source: closing.bytes_to_source,
            outcome: closing.outcome,
            transport: conn.transport,
            source_identity: conn.source_identity,
            destination_identity: conn.destination_identity,
            waypoint: conn.waypoint,
            passthrough_reason: conn.passthrough_reason,
            error: closing.error,
        };
        self.closed.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().expect("records lock");
        // Numbered under the lock, so ids increase along the ring.
        record.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if recent.len() == Self::CAPACITY {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        drop(recent);
        tracing::info!(
            target: "access",
            id = record.id,
            direction = ?record.direction,
            pod = %format_args!("{}/{}", record.pod.namespace, record.pod.name),
            src = %record.source,
            dst = %record.original_destination,
            bytes_from_source = record.bytes_from_source,
            bytes_to_source = record.bytes_to_source,
            duration_ms = record.duration_ms,
            outcome = ?record.outcome,
            transport = ?record.transport,
            src_identity = record.source_identity.as_deref().unwrap_or(""),
            dst_identity = record.destination_identity.as_deref().unwrap_or(""),
            waypoint = record.waypoint.as_deref().unwrap_or(""),
            error = record.error.as_deref().unwrap_or(""),
            "connection closed"
        );
    }

    /// Records with an id greater than `after` (all of them for 0), oldest first.
    pub(crate) fn recent(&self, after: u64) -> Vec<ConnectionRecord> {
        self.recent.lock().expect("records lock").iter().filter(|r| r.id > after).cloned().collect()
    }

    pub(crate) fn totals(&self) -> ConnectionTotals {
        let opened = self.opened.load(Ordering::Relaxed);
        let closed = self.closed.load(Ordering::Relaxed);
        ConnectionTotals { opened, closed, active: opened.saturating_sub(closed) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef { namespace: "ns".into(), name: "p".into(), uid: "u".into() }
    }

    #[test]
    fn records_are_kept_in_order_and_bounded() {
        let recorder = Recorder::new();
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        for _ in 0..Recorder::CAPACITY + 5 {
            let conn = recorder.open(Direction::Outbound, pod(), addr, addr);
            assert_eq!(recorder.totals().active, 1);
            recorder.close(conn, Closing::failed(Outcome::ConnectFailed, "refused"));
        }
        let all = recorder.recent(0);
        assert_eq!(all.len(), Recorder::CAPACITY);
        assert_eq!(all.first().unwrap().id, 6);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(recorder.recent(all.last().unwrap().id - 2).len(), 2);
        let totals = recorder.totals();
        assert_eq!((totals.opened, totals.closed, totals.active), (10_005, 10_005, 0));
    }

    #[test]
    fn the_waypoint_is_named_only_when_there_is_one() {
        let recorder = Recorder::new();
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut conn = recorder.open(Direction::Outbound, pod(), addr, addr);
        conn.waypoint = Some("ns/wp".into());
        recorder.close(conn, Closing::failed(Outcome::NoWaypoint, "no instance"));
        let conn = recorder.open(Direction::Outbound, pod(), addr, addr);
        recorder.close(conn, Closing::failed(Outcome::NoEndpoints, "none"));
        let json: Vec<serde_json::Value> =
            recorder.recent(0).iter().map(|r| serde_json::to_value(r).unwrap()).collect();
        assert_eq!((json[0]["waypoint"].as_str(), json[0]["outcome"].as_str()), (Some("ns/wp"), Some("no_waypoint")));
        assert!(json[1].get("waypoint").is_none());
    }
}
