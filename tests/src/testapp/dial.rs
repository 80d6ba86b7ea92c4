//! Connecting with the timeout and address family the flags ask for.

use std::{
    io,
    net::{SocketAddr, SocketAddrV6, TcpStream},
    time::Duration,
};

use super::args::Flags;

pub(super) struct Dial {
    /// Where to connect, after `--ipv6-mapped` is applied.
    pub(super) addr: SocketAddr,
    pub(super) timeout: Duration,
}

impl Dial {
    pub(super) fn from_flags(flags: &Flags) -> Result<Self, String> {
        let to = flags.addr("to")?;
        let addr = match (flags.has("ipv6-mapped"), to) {
            (false, to) => to,
            (true, SocketAddr::V4(v4)) => SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0)),
            (true, SocketAddr::V6(_)) => {
                return Err("--ipv6-mapped needs an IPv4 --to address".into());
            }
        };
        Ok(Self { addr, timeout: flags.timeout()? })
    }
}

/// Connects (an AF_INET6 socket for a v4-mapped address) and applies the timeout to every read
/// and write.
pub(super) fn dial(target: &Dial) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target.addr, target.timeout)?;
    stream.set_read_timeout(Some(target.timeout))?;
    stream.set_write_timeout(Some(target.timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
