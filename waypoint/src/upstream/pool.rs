//! HTTP connections to one endpoint of a cluster: HTTP/1.1 connections kept alive and reused one
//! request at a time, or one HTTP/2 connection multiplexing requests. Connections count against
//! the cluster's `maxConnections`; a request that finds none free and cannot open one waits as a
//! pending request (within `http1MaxPendingRequests`) until one is released. Idle connections
//! close after `httpIdleTimeout`; a connection is retired after `maxRequestsPerConnection`.

use std::{
    any::Any,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
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
use crate::body::Body;

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

/// The connections to one endpoint.
pub struct EndpointPool {
    pub target: Target,
    idle: Mutex<Vec<IdleH1>>,
    h2: Mutex<Option<H2Conn>>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests share it instead
    /// of each opening their own.
    h2_connecting: tokio::sync::Mutex<()>,
    /// Connections opened so far (for `/config_dump`).
    opened: AtomicU64,
}

impl EndpointPool {
    pub fn new(target: Target) -> Arc<Self> {
        Arc::new(Self {
            target,
            idle: Mutex::default(),
            h2: Mutex::default(),
            h2_connecting: tokio::sync::Mutex::new(()),
            opened: AtomicU64::new(0),
        })
    }

    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections now.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }

    /// Sends `request` on a pooled or new connection.
    pub async fn send(
        self: &Arc<Self>,
        version: HttpVersion,
        request: Request<Body>,
        breaker: &Arc<Breaker>,
        limits: &Limits,
        connector: &Connector,
    ) -> Result<(Response<Incoming>, Option<Lease>), TryError> {
        match version {
            HttpVersion::Http1 => self.send_h1(request, breaker, limits, connector).await,
            HttpVersion::Http2 => self.send_h2(request, breaker, limits, connector).await.map(|r| (r, None)),
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut request: Request<Body>,
        breaker: &Arc<Breaker>,
        limits: &Limits,
        connector: &Connector,
    ) -> Result<(Response<Incoming>, Option<Lease>), TryError> {
        let mut pending: Option<Slot> = None;
        loop {
            let released = breaker.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            while let Some(mut idle) = self.take_idle(limits) {
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
            if let Some(slot) = breaker.connection(limits) {
                let io = connector.connect(&self.target, limits.connect_timeout).await.map_err(TryError::Connect)?;
                let (mut sender, connection) =
                    http1::handshake(TokioIo::new(io)).await.map_err(|e| TryError::from_hyper(&e, &self.target))?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _slot = slot;
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

    /// An idle connection still open and not idle for too long.
    fn take_idle(&self, limits: &Limits) -> Option<IdleH1> {
        let mut idle = self.idle.lock().expect("pool lock");
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
        Box::new(H1Lease { pool: self.clone(), sender: reusable.then_some(sender), uses, breaker: breaker.clone() })
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
            let connecting = self.h2_connecting.lock().await;
            if let Some(sender) = self.shared_h2(limits) {
                break sender;
            }
            if let Some(slot) = breaker.connection(limits) {
                let io = connector.connect(&self.target, limits.connect_timeout).await.map_err(TryError::Connect)?;
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(|e| TryError::from_hyper(&e, &self.target))?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                let breaker = breaker.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                    breaker.released.notify_waiters();
                });
                *self.h2.lock().expect("pool lock") =
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
        let mut slot = self.h2.lock().expect("pool lock");
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
        self.idle.lock().expect("pool lock").retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
        let mut h2 = self.h2.lock().expect("pool lock");
        if h2.as_ref().is_some_and(|c| c.last_used.elapsed() >= timeout || c.sender.is_closed()) {
            *h2 = None;
        }
    }
}

/// An HTTP/1.1 connection lent to one exchange; back in the pool when the response is done.
struct H1Lease {
    pool: Arc<EndpointPool>,
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
            self.pool.idle.lock().expect("pool lock").push(idle);
            self.breaker.released.notify_waiters();
        }
    }
}
