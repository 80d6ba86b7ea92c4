//! Sockets the node proxy creates inside pods' network namespaces. Every one carries `SO_MARK`
//! 0x539 so capture never redirects the proxy's own traffic.

use std::{
    io,
    net::{SocketAddr, TcpListener},
};

pub(crate) use ambit_common::netns::{Netns, netns_cookie};
use ambit_ebpf_types::PROXY_MARK;
use socket2::{Domain, Protocol, Socket, Type};

/// A marked, non-blocking TCP socket created inside `netns`.
pub(crate) fn tcp_socket(netns: &Netns, addr: &SocketAddr) -> io::Result<Socket> {
    let socket = netns.run(|| Socket::new(Domain::for_address(*addr), Type::STREAM, Some(Protocol::TCP)))?;
    socket.set_mark(PROXY_MARK)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// A marked `SO_REUSEPORT` listener bound to `addr` inside `netns`.
pub(crate) fn listen(netns: &Netns, addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tcp_socket(netns, &addr)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
