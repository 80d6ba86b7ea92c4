//! One access record per request: kept in a ring of the last 10 000 (served at
//! `/requests?after=<id>`) and logged on the `access` target.

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

#[derive(Default)]
pub struct Records {
    next_id: AtomicU64,
    ring: Mutex<VecDeque<AccessRecord>>,
}

impl Records {
    /// Stores `record` (giving it its id) and logs it.
    pub fn push(&self, mut record: AccessRecord) {
        record.id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if access_line::enabled() {
            log(&record);
        }
        let mut ring = self.ring.lock().expect("records lock");
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(record);
    }

    /// Records with an id above `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<AccessRecord> {
        let ring = self.ring.lock().expect("records lock");
        ring.iter().filter(|r| r.id > after).cloned().collect()
    }
}

/// The record's access line (`access` target).
fn log(record: &AccessRecord) {
    fn text(value: &Option<String>) -> Value<'_> {
        Value::Quoted(value.as_deref().unwrap_or("-"))
    }
    access_line::write(
        "request",
        &[
            ("id", Value::Number(record.id)),
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
}
