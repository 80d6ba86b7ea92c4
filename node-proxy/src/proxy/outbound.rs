//! A connection an enrolled pod made, captured at connect(): find where it was going and carry
//! it there from inside the pod's own network namespace.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpSocket, TcpStream};

use super::{PodContext, ProxyContext, is_proxy_port, relay};
use crate::{
    netns::{Netns, tcp_socket},
    records::{Closing, Direction, Outcome},
};

pub(super) async fn handle(ctx: &ProxyContext, pod: &PodContext, client: TcpStream, peer: SocketAddr) {
    let Some(destination) = ctx.capture.take_original_destination(peer) else {
        // Someone connected to podIP:15001 directly, or the map lost the entry.
        let conn = ctx.records.open(Direction::Outbound, pod.pod.clone(), peer, local_or(&client, peer));
        relay::reset(&client);
        ctx.records.close(
            conn,
            Closing::failed(Outcome::NoOriginalDestination, "no original destination recorded for this client"),
        );
        return;
    };
    let conn = ctx.records.open(Direction::Outbound, pod.pod.clone(), peer, destination);
    if is_proxy_port(destination.port()) {
        relay::reset(&client);
        ctx.records.close(conn, Closing::failed(Outcome::LoopRefused, "destination is a node-proxy port"));
        return;
    }
    match connect_from_pod(&pod.netns, destination, ctx.connect_timeout).await {
        Ok(upstream) => {
            let closing = relay::relay(client, upstream).await;
            ctx.records.close(conn, closing);
        }
        Err(e) => {
            relay::reset(&client);
            ctx.records.close(conn, Closing::failed(Outcome::ConnectFailed, format!("connect {destination}: {e}")));
        }
    }
}

fn local_or(stream: &TcpStream, fallback: SocketAddr) -> SocketAddr {
    stream.local_addr().unwrap_or(fallback)
}

/// Connects to `destination` from a marked socket inside `netns`.
pub(super) async fn connect_from_pod(
    netns: &Netns,
    destination: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    connect(tcp_socket(netns, &destination)?, destination, timeout).await
}

/// Completes a connect on a prepared non-blocking socket, within `timeout`.
pub(super) async fn connect(
    socket: socket2::Socket,
    destination: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(destination)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))),
    }
}
