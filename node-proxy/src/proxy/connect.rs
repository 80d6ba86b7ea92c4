//! Sockets the data path opens from inside a pod: to a destination (outbound), and to the pod's
//! own app on behalf of a client (inbound), registering the client so the app's `getpeername`
//! shows it.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::net::{TcpSocket, TcpStream};

use crate::{capture::Capture, netns::Netns, netns::tcp_socket};

/// Connects to `destination` from a marked socket inside `netns`.
pub(super) async fn from_pod(netns: &Netns, destination: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    finish(tcp_socket(netns, &destination)?, destination, timeout).await
}

/// Connects to the app at `destination` (an address of the pod) for `client`; the returned guard
/// removes the getpeername registration when the connection is over.
pub(super) async fn to_app<'c>(
    capture: &'c Capture,
    netns: &Netns,
    destination: SocketAddr,
    client: AppPeer,
    timeout: Duration,
) -> io::Result<(TcpStream, PeerRegistration<'c>)> {
    let socket = tcp_socket(netns, &destination)?;
    socket.bind(&SocketAddr::new(destination.ip(), 0).into())?;
    let local = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("in-pod socket has no IP address"))?;
    let shown = match client {
        AppPeer::Exact(address) => address,
        AppPeer::Ip(ip) => SocketAddr::new(ip, local.port()),
    };
    capture.register_inbound_peer(local, shown).map_err(io::Error::other)?;
    let registration = PeerRegistration { capture, local };
    let stream = finish(socket, destination, timeout).await?;
    Ok((stream, registration))
}

/// Who the app is shown as its client (its `accept()` and `getpeername()`).
pub(super) enum AppPeer {
    /// This exact address: a plaintext client, relayed one connection for one.
    Exact(SocketAddr),
    /// This IP, with a port unique to the connection (the in-pod socket's own): the streams of
    /// one HBONE connection would otherwise all show its single source port at once, and an app
    /// keying clients by address would mix them up. (ztunnel likewise shows the client's IP with
    /// a port of its own.)
    Ip(IpAddr),
}

/// Completes a connect on a prepared non-blocking socket, within `timeout`.
async fn finish(socket: socket2::Socket, destination: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(destination)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))),
    }
}

/// Removes the getpeername mapping when the relay is over, however it ends.
pub(super) struct PeerRegistration<'c> {
    capture: &'c Capture,
    local: SocketAddr,
}

impl Drop for PeerRegistration<'_> {
    fn drop(&mut self) {
        self.capture.forget_inbound_peer(self.local);
    }
}
