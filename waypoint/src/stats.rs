//! Request counters for `/stats`.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

#[derive(Default)]
pub struct Stats {
    pub hbone_connections: AtomicU64,
    pub tls_failures: AtomicU64,
    pub streams: AtomicU64,
    pub streams_refused: AtomicU64,
    pub requests: AtomicU64,
    pub responses_2xx: AtomicU64,
    pub responses_3xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub retries: AtomicU64,
    pub mirrored: AtomicU64,
    pub tcp_connections: AtomicU64,
    /// HBONE connections accepted by each worker (index: the worker).
    worker_connections: Mutex<Vec<u64>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    hbone_connections: u64,
    tls_failures: u64,
    streams: u64,
    streams_refused: u64,
    requests: u64,
    responses_2xx: u64,
    responses_3xx: u64,
    responses_4xx: u64,
    responses_5xx: u64,
    retries: u64,
    mirrored: u64,
    tcp_connections: u64,
    worker_connections: Vec<u64>,
}

pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    pub fn response(&self, status: u16) {
        match status {
            200..=299 => inc(&self.responses_2xx),
            300..=399 => inc(&self.responses_3xx),
            400..=499 => inc(&self.responses_4xx),
            500..=599 => inc(&self.responses_5xx),
            _ => {}
        }
    }

    /// Counts an HBONE connection accepted by `worker`.
    pub fn worker_connection(&self, worker: usize) {
        let mut counts = self.worker_connections.lock().expect("stats lock");
        if counts.len() <= worker {
            counts.resize(worker + 1, 0);
        }
        counts[worker] += 1;
    }

    pub fn view(&self) -> StatsView {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsView {
            hbone_connections: get(&self.hbone_connections),
            tls_failures: get(&self.tls_failures),
            streams: get(&self.streams),
            streams_refused: get(&self.streams_refused),
            requests: get(&self.requests),
            responses_2xx: get(&self.responses_2xx),
            responses_3xx: get(&self.responses_3xx),
            responses_4xx: get(&self.responses_4xx),
            responses_5xx: get(&self.responses_5xx),
            retries: get(&self.retries),
            mirrored: get(&self.mirrored),
            tcp_connections: get(&self.tcp_connections),
            worker_connections: self.worker_connections.lock().expect("stats lock").clone(),
        }
    }
}
