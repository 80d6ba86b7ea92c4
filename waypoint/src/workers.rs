//! Thread per core (`ambit_common::workers`): `--workers` threads, each a single-threaded
//! runtime with its own HBONE listener socket on the same address (`SO_REUSEPORT`: the kernel
//! spreads connections over them) and its own upstream connections. A downstream connection,
//! every request on it, and the upstream connections those requests use all live on one
//! thread.
//!
//! What the workers share: the configuration snapshot, the circuit breakers, load balancer and
//! outlier state of each cluster (global, as Envoy's are), the identity, the access records and
//! the counters. The control side (Discovery, the CA client, the admin API) runs on the main
//! thread's runtime.

use std::{future::Future, net::SocketAddr, sync::Arc};

pub use ambit_common::workers::{Workers, WorkersError, count, index, slot};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding the HBONE listener {addr} (--listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Workers(#[from] WorkersError),
}

/// The listener sockets, one per worker, all bound to one address with `SO_REUSEPORT` (port 0:
/// the port the first one got). Call inside a tokio runtime.
pub fn bind(addr: SocketAddr, workers: usize) -> Result<Vec<std::net::TcpListener>, ListenError> {
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers {
        let listener = bind_one(addr).map_err(|source| ListenError::Bind { addr, source })?;
        if addr.port() == 0 {
            addr = listener.local_addr().map_err(|source| ListenError::Bind { addr, source })?;
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

/// Starts one worker (`waypoint-wrk-N`) per listener, each serving its listener with `serve`.
pub fn start<F, Fut>(listeners: Vec<std::net::TcpListener>, serve: F) -> Result<Workers, ListenError>
where
    F: Fn(tokio::net::TcpListener) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let workers = Workers::start(listeners.len(), "waypoint-wrk")?;
    let serve = Arc::new(serve);
    for (index, listener) in listeners.into_iter().enumerate() {
        let serve = serve.clone();
        workers.spawn_on(index, async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener).await,
                Err(e) => tracing::error!(worker = index, error = %e, "worker cannot use its listener"),
            }
        });
    }
    Ok(workers)
}
