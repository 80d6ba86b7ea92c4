//! Thread per core, as Envoy's workers: `--workers` threads, each running its own single-threaded
//! tokio runtime with its own HBONE listener socket on the same address (`SO_REUSEPORT`: the
//! kernel spreads connections over them) and its own upstream connections. A downstream
//! connection, every request on it, and the upstream connections those requests use all live
//! on one thread, so handing a request from one task to the next (the HBONE connection, the
//! HTTP connection on the stream, the upstream HTTP connection, the upstream HBONE connection)
//! never wakes another thread. Waking a thread on another CPU costs tens of microseconds on
//! small VMs, more than the proxy's own work for a request (docs/benchmarks.md).
//!
//! What the workers share: the configuration snapshot, the circuit breakers, load balancer and
//! outlier state of each cluster (global, as Envoy's are), the identity, the access records and
//! the counters. The control side (Discovery, the CA client, the admin API) runs on the main
//! thread's runtime.

use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    thread,
};

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

static COUNT: OnceLock<usize> = OnceLock::new();

/// The worker this thread is (0 on any thread that is not a worker: the control runtime, tests).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// How many workers there are (1 until [`start`] has run): the size of per-worker state.
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or(1)
}

/// The slot of per-worker state `slots` this thread uses.
pub fn slot<T>(slots: &[T]) -> &T {
    &slots[index() % slots.len()]
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("binding the HBONE listener {addr} (--listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("starting worker thread {index}: {source}")]
    Thread { index: usize, source: std::io::Error },
    #[error("--workers was already set to {0} in this process; the worker count cannot change")]
    AlreadyStarted(usize),
}

/// The listener sockets, one per worker, all bound to one address with `SO_REUSEPORT` (port 0:
/// the port the first one got). Call inside a tokio runtime.
pub fn bind(addr: SocketAddr, workers: usize) -> Result<Vec<std::net::TcpListener>, WorkersError> {
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers {
        let listener = bind_one(addr).map_err(|source| WorkersError::Bind { addr, source })?;
        if addr.port() == 0 {
            addr = listener.local_addr().map_err(|source| WorkersError::Bind { addr, source })?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds and listens; must run inside a tokio runtime (the listener is registered with it, then
/// handed over as a std listener to the worker that will own it).
fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Starts one worker thread per listener (`waypoint-wrk-N`), each serving its listener with
/// `serve` on a single-threaded runtime. The threads run until the process exits.
pub fn start<F, Fut>(listeners: Vec<std::net::TcpListener>, serve: F) -> Result<(), WorkersError>
where
    F: Fn(tokio::net::TcpListener) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let workers = listeners.len();
    if let Err(set) = COUNT.set(workers).map_err(|_| count())
        && set != workers
    {
        return Err(WorkersError::AlreadyStarted(set));
    }
    let serve = Arc::new(serve);
    for (index, listener) in listeners.into_iter().enumerate() {
        let serve = serve.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| WorkersError::Thread { index, source })?;
        thread::Builder::new()
            .name(format!("waypoint-wrk-{index}"))
            .spawn(move || {
                INDEX.with(|i| i.set(index));
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener).await,
                        Err(e) => tracing::error!(worker = index, error = %e, "worker cannot use its listener"),
                    }
                });
            })
            .map_err(|source| WorkersError::Thread { index, source })?;
    }
    Ok(())
}
