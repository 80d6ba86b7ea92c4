//! HTTP connections to one endpoint of a cluster: HTTP/1.1 connections kept alive and reused one
//! request at a time, or one HTTP/2 connection multiplexing requests. Connections count against
//! the cluster's `maxConnections`; a request that finds none free and cannot open one waits as a
//! pending request (within `http1MaxPendingRequests`) until one is released. Idle connections
//! close after `httpIdleTimeout`; a connection is retired after `maxRequestsPerConnection`.

use std::{
    any::Any,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{
    TryError,
    breaker::{Breaker, Limits, Slot},
    connect::{Connector, Target},
};
use crate::{body::Body, workers};

/// The HTTP version spoken to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

/// What a response must hold until its body is done: for HTTP/1.1, the connection (returned to
/// the pool then).
pub type Lease = Box<dyn Any + Send>;

struct IdleH1 {
    sender: http1::SendRequest<Body>,
    since: Instant,
    uses: u32,
}

struct H2Conn {
    sender: http2::SendRequest<Body>,
    last_used: Instant,
    uses: u32,
}

/// The connections to one endpoint, kept per worker: a connection's tasks run on the worker that
/// opened it, and only that worker's requests use it (see [`crate::workers`]). The circuit
/// breakers count the connections of all workers together.
pub struct EndpointPool {
    pub target: Target,
    workers: Box<[WorkerConnections]>,
    /// Connections opened so far (for `/config_dump`).
    opened: AtomicU64,
}

/// One worker's connections to the endpoint.
#[derive(Default)]
struct WorkerConnections {
    /// Connections open or being opened (idle, busy or connecting).
    live: Arc<AtomicUsize>,
    idle: Mutex<Vec<IdleH1>>,
    h2: Mutex<Option<H2Conn>>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests share it instead
    /// of each opening their own.
    h2_connecting: tokio::sync::Mutex<()>,
}

impl WorkerConnections {
    fn is_empty(&self) -> bool {
        self.live.load(Ordering::Acquire) == 0
    }

    /// Counts a connection being opened until the guard is dropped (it failed, or it closed).
    fn live(&self) -> LiveConnection {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveConnection(self.live.clone())
    }
}

struct LiveConnection(Arc<AtomicUsize>);

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EndpointPool {
    pub fn new(target: Target) -> Arc<Self> {
        let workers = (0..workers::count()).map(|_| WorkerConnections::default()).collect();
        Arc::new(Self { target, workers, opened: AtomicU64::new(0) })
    }

    /// This worker's connections.
    fn local(&self) -> &WorkerConnections {
        workers::slot(&self.workers)
    }

    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections now, on all workers.
    pub fn idle_connections(&self) -> usize {
        self.workers.iter().map(|w| w.idle.lock().expect("pool lock").len()).sum()
    }

    /// Sends `request` on a pooled or new connection. An `upgrade` request (WebSocket, HTTP/1.1
    /// only) goes on a new connection of its own, never pooled: after a 101 it is the tunnel's,
    /// and the lease holds its connection slot, so it counts against `maxConnections` for as long
    /// as the exchange (the tunnel) lives.
    pub async fn send(
        self: &Arc<Self>,
        version: HttpVersion,
        request: Request<Body>,
        upgrade: bool,
        breaker: &Arc<Breaker>,
        limits: &Limits,
        connector: &Connector,
    ) -> Result<(Response<Incoming>, Option<Lease>), TryError> {
        match version {
            HttpVersion::Http1 => self.send_h1(request, upgrade, breaker, limits, connector).await,
            HttpVersion::Http2 => self.send_h2(request, breaker, limits, connector).await.map(|r| (r, None)),
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut request: Request<Body>,
        upgrade: bool,
        breaker: &Arc<Breaker>,
        limits: &Limits,
        connector: &Connector,
    ) -> Result<(Response<Incoming>, Option<Lease>), TryError> {
        let mut pending: Option<Slot> = None;
        loop {
            let released = breaker.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            while !upgrade && let Some(mut idle) = self.take_idle(limits) {
                if idle.sender.ready().await.is_err() {
                    continue;
                }
                match idle.sender.try_send_request(request).await {
                    Ok(response) => {
                        let lease = self.lease(idle.sender, idle.uses + 1, breaker, limits);
                        return Ok((response, Some(lease)));
                    }
                    // Not sent: the kept-alive connection had closed. Another one will do.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => request = unsent,
                        None => return Err(TryError::from_hyper(&e.into_error(), &self.target)),
                    },
                }
            }
            if let Some(slot) = self.connection_slot(breaker, limits) {
                let live = self.local().live();
                let io = connector.connect(&self.target, limits.connect_timeout).await.map_err(TryError::Connect)?;
                let (mut sender, connection) =
                    http1::handshake(TokioIo::new(io)).await.map_err(|e| TryError::from_hyper(&e, &self.target))?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                if upgrade {
                    tokio::spawn(async move {
                        if let Err(e) = connection.with_upgrades().await {
                            tracing::debug!(error = %e, "upstream HTTP/1.1 connection for an upgrade ended");
                        }
                    });
                    let response =
                        sender.send_request(request).await.map_err(|e| TryError::from_hyper(&e, &self.target))?;
                    return Ok((response, Some(Box::new((slot, live)))));
                }
                tokio::spawn(async move {
                    let _slot = (slot, live);
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                    }
                });
                let response =
                    sender.send_request(request).await.map_err(|e| TryError::from_hyper(&e, &self.target))?;
                return Ok((response, Some(self.lease(sender, 1, breaker, limits))));
            }
            if pending.is_none() {
                pending = Some(breaker.pending(limits).ok_or(TryError::Overflow)?);
                breaker.connection_overflow();
            }
            released.await;
        }
    }

    /// A slot for a new connection: within `maxConnections`, or beyond it when this worker has no
    /// connection to the endpoint at all (as Envoy does: the limit is the cluster's, shared by
    /// every worker's pools, and a pool with no connection could otherwise never serve the
    /// requests waiting in it while other workers' connections hold every slot).
    fn connection_slot(&self, breaker: &Arc<Breaker>, limits: &Limits) -> Option<Slot> {
        breaker.connection(limits).or_else(|| self.local().is_empty().then(|| breaker.connection_beyond_limit()))
    }

    /// An idle connection still open and not idle for too long.
    fn take_idle(&self, limits: &Limits) -> Option<IdleH1> {
        let mut idle = self.local().idle.lock().expect("pool lock");
        while let Some(conn) = idle.pop() {
            let stale = limits.http_idle_timeout.is_some_and(|t| conn.since.elapsed() >= t);
            if !stale && !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn lease(
        self: &Arc<Self>,
        sender: http1::SendRequest<Body>,
        uses: u32,
        breaker: &Arc<Breaker>,
        limits: &Limits,
    ) -> Lease {
        let reusable = limits.max_requests_per_connection.is_none_or(|max| uses < max);
        Box::new(H1Lease {
            pool: self.clone(),
            worker: workers::index() % self.workers.len(),
            sender: reusable.then_some(sender),
            uses,
            breaker: breaker.clone(),
        })
    }

    async fn send_h2(
        self: &Arc<Self>,
        request: Request<Body>,
        breaker: &Arc<Breaker>,
        limits: &Limits,
        connector: &Connector,
    ) -> Result<Response<Incoming>, TryError> {
        let mut pending: Option<Slot> = None;
        let mut sender = loop {
            let released = breaker.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(sender) = self.shared_h2(limits) {
                break sender;
            }
            let connecting = self.local().h2_connecting.lock().await;
            if let Some(sender) = self.shared_h2(limits) {
                break sender;
            }
            if let Some(slot) = self.connection_slot(breaker, limits) {
                let live = self.local().live();
                let io = connector.connect(&self.target, limits.connect_timeout).await.map_err(TryError::Connect)?;
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| TryError::from_hyper(&e, &self.target))?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                let breaker = breaker.clone();
                tokio::spawn(async move {
                    let _slot = (slot, live);
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                    breaker.released.notify_waiters();
                });
                *self.local().h2.lock().expect("pool lock") =
                    Some(H2Conn { sender: sender.clone(), last_used: Instant::now(), uses: 1 });
                break sender;
            }
            drop(connecting);
            if pending.is_none() {
                pending = Some(breaker.pending(limits).ok_or(TryError::Overflow)?);
                breaker.connection_overflow();
            }
            released.await;
        };
        drop(pending);
        sender.send_request(request).await.map_err(|e| TryError::from_hyper(&e, &self.target))
    }

    /// The endpoint's HTTP/2 connection, if open and not retired; counts a request on it.
    fn shared_h2(&self, limits: &Limits) -> Option<http2::SendRequest<Body>> {
        let mut slot = self.local().h2.lock().expect("pool lock");
        let conn = slot.as_mut()?;
        let stale = limits.http_idle_timeout.is_some_and(|t| conn.last_used.elapsed() >= t);
        let retired = limits.max_requests_per_connection.is_some_and(|max| conn.uses >= max);
        if conn.sender.is_closed() || stale || retired {
            // Requests in flight keep their clones; the connection ends with the last.
            *slot = None;
            return None;
        }
        conn.uses += 1;
        conn.last_used = Instant::now();
        Some(conn.sender.clone())
    }

    /// Closes connections idle for longer than the limit (run periodically).
    pub fn sweep(&self, limits: &Limits) {
        let Some(timeout) = limits.http_idle_timeout else { return };
        for worker in &self.workers {
            worker.idle.lock().expect("pool lock").retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
            let mut h2 = worker.h2.lock().expect("pool lock");
            if h2.as_ref().is_some_and(|c| c.last_used.elapsed() >= timeout || c.sender.is_closed()) {
                *h2 = None;
            }
        }
    }
}

/// An HTTP/1.1 connection lent to one exchange; back in the pool when the response is done.
struct H1Lease {
    pool: Arc<EndpointPool>,
    /// The worker whose connection it is.
    worker: usize,
    sender: Option<http1::SendRequest<Body>>,
    uses: u32,
    breaker: Arc<Breaker>,
}

impl Drop for H1Lease {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take()
            && !sender.is_closed()
        {
            let idle = IdleH1 { sender, since: Instant::now(), uses: self.uses };
            self.pool.workers[self.worker].idle.lock().expect("pool lock").push(idle);
            self.breaker.released.notify_waiters();
        }
    }
}
