//! A cluster's circuit breakers (Istio's `connectionPool`, Envoy's thresholds): counters of
//! upstream connections, requests waiting for a connection, requests in flight and retries in
//! flight, each with its limit. Taking a slot past the limit fails, and the request fails with
//! 503 UO. Slots are guards: dropping one frees it and wakes the requests waiting for a
//! connection.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use ambit_common::api::v1::ConnectionPool;
use serde::Serialize;
use tokio::sync::Notify;

/// Envoy's default connect timeout when the cluster sets none (the mesh default).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of one cluster. A limit of 0 (a field the control plane left unset) is unlimited,
/// as Istio's default of 4294967295 is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    #[serde(serialize_with = "millis")]
    pub connect_timeout: Duration,
    /// An idle upstream HTTP connection is closed after this long; `None`: never.
    #[serde(serialize_with = "optional_millis")]
    pub http_idle_timeout: Option<Duration>,
    /// `None`: unlimited; 1 disables keep-alive.
    pub max_requests_per_connection: Option<u32>,
    /// A TCP-route connection on which no byte moves either way for this long is reset
    /// (`connectionPool.tcp.idleTimeout`, Istio's default 1 h); `None`: never.
    #[serde(serialize_with = "optional_millis")]
    pub tcp_idle_timeout: Option<Duration>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn optional_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

impl Limits {
    pub fn from_config(pool: Option<&ConnectionPool>) -> Self {
        let pool = pool.cloned().unwrap_or_default();
        let unlimited = |limit: u32| if limit == 0 { u32::MAX } else { limit };
        Self {
            max_connections: unlimited(pool.max_connections),
            max_pending_requests: unlimited(pool.http1_max_pending_requests),
            max_requests: unlimited(pool.http2_max_requests),
            max_retries: unlimited(pool.max_retries),
            connect_timeout: match pool.connect_timeout_ms {
                0 => DEFAULT_CONNECT_TIMEOUT,
                ms => Duration::from_millis(ms),
            },
            http_idle_timeout: (pool.http_idle_timeout_ms > 0)
                .then(|| Duration::from_millis(pool.http_idle_timeout_ms)),
            max_requests_per_connection: (pool.max_requests_per_connection > 0)
                .then_some(pool.max_requests_per_connection),
            tcp_idle_timeout: (pool.tcp_idle_timeout_ms > 0).then(|| Duration::from_millis(pool.tcp_idle_timeout_ms)),
        }
    }
}

/// One kind of resource: in use, and how often a request found it full.
#[derive(Debug, Default)]
struct Counter {
    in_use: AtomicU32,
    overflows: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Breaker {
    connections: Counter,
    pending: Counter,
    requests: Counter,
    retries: Counter,
    /// Woken when a connection is released or returned to a pool, or closes.
    pub(crate) released: Notify,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Connections,
    Pending,
    Requests,
    Retries,
}

/// A slot of one of the breaker's resources, freed on drop.
#[must_use = "the slot is freed when dropped"]
pub struct Slot {
    breaker: Arc<Breaker>,
    kind: Kind,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.breaker.counter(self.kind).in_use.fetch_sub(1, Ordering::AcqRel);
        if matches!(self.kind, Kind::Connections) {
            self.breaker.released.notify_waiters();
        }
    }
}

/// What `/config_dump` and `/stats` show of a breaker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerStatus {
    pub connections: u32,
    pub pending_requests: u32,
    pub requests: u32,
    pub retries: u32,
    pub connection_overflows: u64,
    pub pending_overflows: u64,
    pub request_overflows: u64,
    pub retry_overflows: u64,
}

impl Breaker {
    fn counter(&self, kind: Kind) -> &Counter {
        match kind {
            Kind::Connections => &self.connections,
            Kind::Pending => &self.pending,
            Kind::Requests => &self.requests,
            Kind::Retries => &self.retries,
        }
    }

    fn acquire(self: &Arc<Self>, kind: Kind, limit: u32, count_overflow: bool) -> Option<Slot> {
        let counter = self.counter(kind);
        let taken = counter.in_use.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then(|| n + 1));
        match taken {
            Ok(_) => Some(Slot { breaker: self.clone(), kind }),
            Err(_) => {
                if count_overflow {
                    counter.overflows.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// A new upstream connection, within `max_connections`. Running out is not yet an overflow:
    /// the request may wait for a connection as a pending request.
    pub fn connection(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.acquire(Kind::Connections, limits.max_connections, false)
    }

    /// A new upstream connection past `max_connections` (counted as an overflow): for a worker
    /// that has no connection to the endpoint, so its requests are not left waiting on the
    /// other workers' connections (Envoy's rule).
    pub fn connection_beyond_limit(self: &Arc<Self>) -> Slot {
        self.connections.in_use.fetch_add(1, Ordering::AcqRel);
        self.connections.overflows.fetch_add(1, Ordering::Relaxed);
        Slot { breaker: self.clone(), kind: Kind::Connections }
    }

    /// Counts a connection refused by `max_connections` that a request could not wait for.
    pub fn connection_overflow(&self) {
        self.connections.overflows.fetch_add(1, Ordering::Relaxed);
    }

    /// A request waiting for a connection, within `http1MaxPendingRequests`.
    pub fn pending(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.acquire(Kind::Pending, limits.max_pending_requests, true)
    }

    /// A request in flight, within `http2MaxRequests`.
    pub fn request(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.acquire(Kind::Requests, limits.max_requests, true)
    }

    /// A retry in flight, within `maxRetries`.
    pub fn retry(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.acquire(Kind::Retries, limits.max_retries, true)
    }

    pub fn status(&self) -> BreakerStatus {
        let load = |c: &Counter| (c.in_use.load(Ordering::Relaxed), c.overflows.load(Ordering::Relaxed));
        let (connections, connection_overflows) = load(&self.connections);
        let (pending_requests, pending_overflows) = load(&self.pending);
        let (requests, request_overflows) = load(&self.requests);
        let (retries, retry_overflows) = load(&self.retries);
        BreakerStatus {
            connections,
            pending_requests,
            requests,
            retries,
            connection_overflows,
            pending_overflows,
            request_overflows,
            retry_overflows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_freed_on_drop() {
        let limits = Limits::from_config(Some(&ConnectionPool {
            max_connections: 1,
            http1_max_pending_requests: 1,
            ..Default::default()
        }));
        let breaker = Arc::new(Breaker::default());
        let connection = breaker.connection(&limits).unwrap();
        assert!(breaker.connection(&limits).is_none());
        let pending = breaker.pending(&limits).unwrap();
        assert!(breaker.pending(&limits).is_none());
        assert_eq!(breaker.status().pending_overflows, 1);
        drop((connection, pending));
        assert!(breaker.connection(&limits).is_some());
        assert_eq!(breaker.status().connections, 0, "the slot taken above was dropped at once");
        let held = breaker.connection(&limits).unwrap();
        let beyond = breaker.connection_beyond_limit();
        assert_eq!((breaker.status().connections, breaker.status().connection_overflows), (2, 1));
        drop((held, beyond));
        assert_eq!(breaker.status().connections, 0);
    }

    #[test]
    fn unset_limits_are_unlimited_and_timeouts_have_defaults() {
        let limits = Limits::from_config(None);
        assert_eq!(limits.max_connections, u32::MAX);
        assert_eq!(limits.connect_timeout, Duration::from_secs(10));
        assert_eq!(limits.http_idle_timeout, None);
        assert_eq!(limits.max_requests_per_connection, None);
    }
}
