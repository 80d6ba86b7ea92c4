//! One access record per request and one per TCP connection: each kind kept in a ring of the
//! last 10 000 (served at `/requests?after=<id>` and `/connections?after=<id>`) and logged on the
//! `access` target.

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use ambit_common::logging::access_line::{self, Value};
use serde::Serialize;

const CAPACITY: usize = 10_000;

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRecord {
    pub id: u64,
    pub start_unix_ms: u64,
    /// Until the response body ended (sent whole, or abandoned), as Envoy's `%DURATION%`; the
    /// record is written then.
    pub duration_ms: u64,
    /// `x-request-id`: the client's, or the one the waypoint made.
    pub request_id: String,
    pub source_identity: Option<String>,
    pub source_address: String,
    /// The service address the client's tunnel was for (`vip:port`).
    pub destination: String,
    pub authority: String,
    pub method: String,
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    pub route_name: Option<String>,
    pub cluster: Option<String>,
    /// The endpoint of the last try.
    pub upstream_host: Option<String>,
    /// The endpoint of every try, in order.
    pub upstream_hosts: Vec<String>,
    /// Tries made upstream.
    pub attempts: u32,
    pub response_code: u16,
    /// Envoy's flags (`UO`, `URX`, `DI,FI`), `-` when none.
    pub response_flags: String,
    pub grpc_status: Option<u32>,
    /// The clusters a copy of the request was sent to.
    pub mirrored: Vec<String>,
    /// Why the request failed, when the waypoint knows more than the flags say (the last try's
    /// error, the policy that denied it).
    pub detail: Option<String>,
}

/// A TCP connection through the waypoint (a port's TCP route), recorded when it ends, with
/// the same fields the node proxy's connection records and Envoy's TCP proxy log carry.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionRecord {
    pub id: u64,
    pub start_unix_ms: u64,
    pub duration_ms: u64,
    pub source_identity: Option<String>,
    pub source_address: String,
    /// The service address the client's tunnel was for (`vip:port`).
    pub destination: String,
    pub cluster: Option<String>,
    pub upstream_host: Option<String>,
    pub bytes_from_source: u64,
    pub bytes_to_source: u64,
    /// How it ended: `completed`, `sourceReset`, `upstreamReset`, `idleTimeout`, or `refused`
    /// (never relayed: see the flags and the detail).
    pub end: &'static str,
    /// Envoy's flags for a refused connection (`NR`, `UH`, `UO`, `UF`, `UC`), `-` when none.
    pub response_flags: String,
    pub detail: Option<String>,
}

/// The access records: the last 10 000 requests and the last 10 000 TCP connections, each with
/// ids of its own.
#[derive(Default)]
pub struct Records {
    requests: Ring<AccessRecord>,
    connections: Ring<ConnectionRecord>,
}

impl Records {
    /// Stores a request's `record` (giving it its id) and logs it.
    pub fn push(&self, mut record: AccessRecord) {
        record.id = self.requests.next_id();
        if access_line::enabled() {
            log(&record);
        }
        self.requests.push(record);
    }

    /// Request records with an id above `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<AccessRecord> {
        self.requests.after(after, |r| r.id)
    }

    /// Stores a TCP connection's `record` (giving it its id) and logs it.
    pub fn push_connection(&self, mut record: ConnectionRecord) {
        record.id = self.connections.next_id();
        if access_line::enabled() {
            log_connection(&record);
        }
        self.connections.push(record);
    }

    /// Connection records with an id above `after`, oldest first.
    pub fn connections_after(&self, after: u64) -> Vec<ConnectionRecord> {
        self.connections.after(after, |r| r.id)
    }
}

/// The last [`CAPACITY`] records of one kind.
struct Ring<T> {
    next_id: AtomicU64,
    ring: Mutex<VecDeque<T>>,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self { next_id: AtomicU64::new(0), ring: Mutex::new(VecDeque::new()) }
    }
}

impl<T: Clone> Ring<T> {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn push(&self, record: T) {
        let mut ring = self.ring.lock().expect("records lock");
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    fn after(&self, after: u64, id: impl Fn(&T) -> u64) -> Vec<T> {
        let ring = self.ring.lock().expect("records lock");
        ring.iter().filter(|r| id(r) > after).cloned().collect()
    }
}

fn text(value: &Option<String>) -> Value<'_> {
    Value::Quoted(value.as_deref().unwrap_or("-"))
}

/// A connection record's access line (`access` target).
fn log_connection(record: &ConnectionRecord) {
    access_line::write(
        "connection",
        &[
            ("id", Value::Number(record.id)),
            ("source", Value::Bare(&record.source_address)),
            ("identity", text(&record.source_identity)),
            ("destination", Value::Bare(&record.destination)),
            ("cluster", text(&record.cluster)),
            ("upstream", text(&record.upstream_host)),
            ("sent", Value::Number(record.bytes_from_source)),
            ("received", Value::Number(record.bytes_to_source)),
            ("end", Value::Bare(record.end)),
            ("flags", Value::Bare(&record.response_flags)),
            ("duration_ms", Value::Number(record.duration_ms)),
            ("detail", text(&record.detail)),
        ],
    );
}

/// A request record's access line (`access` target).
fn log(record: &AccessRecord) {
    access_line::write(
        "request",
        &[
            ("id", Value::Number(record.id)),
            ("request_id", Value::Quoted(&record.request_id)),
            ("source", Value::Bare(&record.source_address)),
            ("identity", text(&record.source_identity)),
            // The request line's parts hold no spaces (hyper and h2 refuse them): bare, as before.
            ("method", Value::Bare(&record.method)),
            ("authority", Value::Bare(&record.authority)),
            ("path", Value::Bare(&record.path)),
            ("protocol", Value::Quoted(record.protocol)),
            ("route", text(&record.route_name)),
            ("cluster", text(&record.cluster)),
            ("upstream", text(&record.upstream_host)),
            ("attempts", Value::Number(record.attempts.into())),
            ("code", Value::Number(record.response_code.into())),
            ("flags", Value::Bare(&record.response_flags)),
            ("duration_ms", Value::Number(record.duration_ms)),
            ("detail", text(&record.detail)),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_latest_and_pages_by_id() {
        let records = Records::default();
        for _ in 0..CAPACITY + 5 {
            records.push(AccessRecord::default());
        }
        let all = records.after(0);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].id, 6, "the oldest five are gone");
        assert_eq!(records.after(CAPACITY as u64 + 3).iter().map(|r| r.id).collect::<Vec<_>>(), [10_004, 10_005]);
    }

    #[test]
    fn connections_have_a_ring_and_ids_of_their_own() {
        let records = Records::default();
        records.push(AccessRecord::default());
        records.push_connection(ConnectionRecord::default());
        records.push_connection(ConnectionRecord::default());
        assert_eq!(records.after(0).len(), 1);
        assert_eq!(records.connections_after(0).iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(records.connections_after(1).len(), 1);
    }
}
