//! The HBONE client: a pool of HTTP/2 connections, each carrying up to
//! `max_streams_per_connection` CONNECT streams. Connections are keyed by the caller — for node
//! proxies (source identity, destination identity, destination IP), so a connection is only ever
//! shared by streams that would have presented and expected the same certificates.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{H2Stream, HboneError, Settings, stream::StreamSlot};

struct Connection {
    sender: SendRequest<Bytes>,
    streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    idle_since: Mutex<Instant>,
}

impl Connection {
    fn usable(&self, max_streams: usize) -> bool {
        !self.closed.load(Ordering::Acquire) && self.streams.load(Ordering::Acquire) < max_streams
    }

    async fn open(&self, authority: SocketAddr) -> Result<H2Stream, HboneError> {
        self.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(self.streams.clone());
        *self.idle_since.lock().expect("idle lock") = Instant::now();
        let mut sender = self.sender.clone().ready().await.map_err(HboneError::Connection)?;
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.to_string())
            .body(())
            .expect("an ip:port authority is a valid CONNECT request");
        let (response, send) = sender.send_request(request, false).map_err(HboneError::Connection)?;
        let response = response.await.map_err(HboneError::Connection)?;
        if response.status() != http::StatusCode::OK {
            return Err(HboneError::Refused { authority: authority.to_string(), status: response.status().as_u16() });
        }
        Ok(H2Stream::new(response.into_body(), send, Some(slot)))
    }
}

/// Pooled HBONE connections by key `K`.
pub struct Pool<K> {
    settings: Settings,
    connections: Arc<Mutex<HashMap<K, Vec<Arc<Connection>>>>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Pool<K> {
    /// A pool; its reaper (closing idle connections) runs while the pool exists.
    pub fn new(settings: Settings) -> Self {
        let connections: Arc<Mutex<HashMap<K, Vec<Arc<Connection>>>>> = Arc::default();
        tokio::spawn(reap(Arc::downgrade(&connections), settings.clone()));
        Self { settings, connections }
    }

    /// A CONNECT stream to `authority` on a pooled connection for `key`, or on a new one made
    /// with `connect` (which returns the stream HTTP/2 runs over, normally mutual TLS). A request
    /// that fails on a reused connection because that connection went stale is retried once on
    /// a fresh one; a refusal by the peer is not.
    pub async fn open<C, F, IO>(&self, key: &K, authority: SocketAddr, connect: C) -> Result<H2Stream, HboneError>
    where
        C: FnOnce() -> F,
        F: Future<Output = std::io::Result<IO>>,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(pooled) = self.pick(key) {
            match pooled.open(authority).await {
                Ok(stream) => return Ok(stream),
                Err(e) if e.stale_connection() => {
                    pooled.closed.store(true, Ordering::Release);
                    tracing::debug!(error = %e, "a pooled HBONE connection was stale; opening a new one");
                }
                Err(e) => return Err(e),
            }
        }
        let io = connect().await.map_err(HboneError::Connect)?;
        let connection = Arc::new(self.handshake(io).await?);
        self.connections.lock().expect("pool lock").entry(key.clone()).or_default().push(connection.clone());
        connection.open(authority).await
    }

    /// Open connections for `key` (for tests and admin views).
    pub fn connections(&self, key: &K) -> usize {
        self.connections
            .lock()
            .expect("pool lock")
            .get(key)
            .map_or(0, |c| c.iter().filter(|c| !c.closed.load(Ordering::Acquire)).count())
    }

    fn pick(&self, key: &K) -> Option<Arc<Connection>> {
        let pool = self.connections.lock().expect("pool lock");
        pool.get(key)?.iter().find(|c| c.usable(self.settings.max_streams_per_connection)).cloned()
    }

    async fn handshake<IO>(&self, io: IO) -> Result<Connection, HboneError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(self.settings.stream_window)
            .initial_connection_window_size(self.settings.connection_window)
            .max_frame_size(self.settings.max_frame_size)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(HboneError::Handshake)?;
        let closed = Arc::new(AtomicBool::new(false));
        let ping = connection.ping_pong();
        let driver = tokio::spawn({
            let closed = closed.clone();
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "HBONE connection ended");
                }
                closed.store(true, Ordering::Release);
            }
        });
        if let Some(ping) = ping {
            tokio::spawn(keepalive(ping, driver, closed.clone(), self.settings.clone()));
        }
        Ok(Connection {
            sender,
            streams: Arc::new(AtomicUsize::new(0)),
            closed,
            idle_since: Mutex::new(Instant::now()),
        })
    }
}

/// PINGs the peer; a connection whose peer stops answering is torn down.
async fn keepalive(
    mut ping: h2::PingPong,
    driver: tokio::task::JoinHandle<()>,
    closed: Arc<AtomicBool>,
    settings: Settings,
) {
    let mut ticker = tokio::time::interval(settings.keepalive_interval);
    ticker.tick().await;
    while !closed.load(Ordering::Acquire) {
        ticker.tick().await;
        match tokio::time::timeout(settings.keepalive_timeout, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return, // the connection is gone
            Err(_) => {
                tracing::warn!(
                    "HBONE peer did not answer a PING within {:?}; closing the connection",
                    settings.keepalive_timeout
                );
                closed.store(true, Ordering::Release);
                driver.abort();
                return;
            }
        }
    }
}

/// Drops closed connections, and idle ones after `idle_timeout` (their streams are gone, so
/// dropping the sender lets the connection finish with GOAWAY).
async fn reap<K: Hash + Eq>(connections: Weak<Mutex<HashMap<K, Vec<Arc<Connection>>>>>, settings: Settings) {
    let mut ticker = tokio::time::interval(settings.idle_timeout.min(std::time::Duration::from_secs(10)));
    loop {
        ticker.tick().await;
        let Some(connections) = connections.upgrade() else { return };
        let mut pool = connections.lock().expect("pool lock");
        for list in pool.values_mut() {
            list.retain(|c| {
                let idle = c.streams.load(Ordering::Acquire) == 0
                    && c.idle_since.lock().expect("idle lock").elapsed() >= settings.idle_timeout;
                !c.closed.load(Ordering::Acquire) && !idle
            });
        }
        pool.retain(|_, list| !list.is_empty());
    }
}
