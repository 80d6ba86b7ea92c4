//! Accept loops for the in-pod listeners. A loop stops when its pod is unenrolled, but first gives
//! connections already steered to it a moment to arrive and serves everything in its backlog, so
//! unenrolling never resets a connection that was captured just before.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

use super::{PodContext, ProxyContext, hbone, inbound, outbound};

/// How long an unenrolled pod's listeners keep accepting what capture steered to them before the
/// switch was flipped (a SYN may still be in flight).
const DRAIN_GRACE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerRole {
    Outbound,
    InboundPlaintext,
    Hbone,
}

/// Serves `listener` on `runtime` (the pod's worker) until `shutdown` flips to true (or its
/// sender is dropped). The connections it accepts run there too.
pub(crate) fn spawn_accept_loop(
    role: ListenerRole,
    listener: std::net::TcpListener,
    runtime: &tokio::runtime::Handle,
    ctx: Arc<ProxyContext>,
    pod: Arc<PodContext>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = {
        // Registered with the IO driver of the runtime that will poll it.
        let _entered = runtime.enter();
        TcpListener::from_std(listener)?
    };
    Ok(runtime.spawn(async move {
        let handle = move |stream: TcpStream, peer: SocketAddr| {
            let (ctx, pod) = (ctx.clone(), pod.clone());
            async move {
                match role {
                    ListenerRole::Outbound => outbound::handle(&ctx, &pod, stream, peer).await,
                    ListenerRole::InboundPlaintext => inbound::handle(&ctx, &pod, stream, peer).await,
                    ListenerRole::Hbone => hbone::handle(ctx, pod, stream, peer).await,
                }
            }
        };
        accept_until_shutdown(&listener, shutdown, &handle).await;
        tokio::time::sleep(DRAIN_GRACE).await;
        // Zero timeout: tokio polls the accept first, so this takes exactly what is queued.
        while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
            tokio::spawn(handle(stream, peer));
        }
    }))
}

async fn accept_until_shutdown<H, F>(listener: &TcpListener, mut shutdown: watch::Receiver<bool>, handle: &H)
where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handle(stream, peer));
                }
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
