//! A plaintext connection to an enrolled pod, steered to the in-pod listener by sk_lookup. The
//! accepted socket's local address is the original destination. The proxy connects to the app
//! from inside the pod; capture's getpeername hook shows the app the real client's address.

use std::{io, net::SocketAddr};

use tokio::net::TcpStream;

use super::{PodContext, ProxyContext, is_proxy_port, outbound::connect, relay};
use crate::{
    capture::Capture,
    netns::tcp_socket,
    records::{Closing, Direction, Outcome},
};

pub(super) async fn handle(ctx: &ProxyContext, pod: &PodContext, client: TcpStream, peer: SocketAddr) {
    let destination = match client.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::debug!(error = %e, %peer, "inbound connection vanished before it was handled");
            return;
        }
    };
    let conn = ctx.records.open(Direction::Inbound, pod.pod.clone(), peer, destination);
    if is_proxy_port(destination.port()) {
        relay::reset(&client);
        ctx.records.close(conn, Closing::failed(Outcome::LoopRefused, "destination is a node-proxy port"));
        return;
    }
    let mut registration = None;
    let connected = async {
        let socket = tcp_socket(&pod.netns, &destination)?;
        socket.bind(&SocketAddr::new(destination.ip(), 0).into())?;
        let local =
            socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("in-pod socket has no IP address"))?;
        ctx.capture.register_inbound_peer(local, peer).map_err(io::Error::other)?;
        registration = Some(PeerRegistration { capture: &ctx.capture, local });
        connect(socket, destination, ctx.connect_timeout).await
    }
    .await;
    match connected {
        Ok(app) => {
            let closing = relay::relay(client, app).await;
            ctx.records.close(conn, closing);
        }
        Err(e) => {
            relay::reset(&client);
            ctx.records.close(conn, Closing::failed(Outcome::ConnectFailed, format!("connect {destination}: {e}")));
        }
    }
    drop(registration);
}

/// Removes the getpeername mapping when the relay is over, however it ends.
struct PeerRegistration<'a> {
    capture: &'a Capture,
    local: SocketAddr,
}

impl Drop for PeerRegistration<'_> {
    fn drop(&mut self) {
        self.capture.forget_inbound_peer(self.local);
    }
}
