//! Packet capture on one interface of a network namespace (an `AF_PACKET` socket, like tcpdump
//! without the dependency): what actually crosses the wire, for tests that check traffic is
//! encrypted. Only IPv4 TCP segments are kept, with their payloads.

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use ambit_common::netns::Netns;
use anyhow::Context;

/// Payload bytes kept at most (the rest of a long capture is counted, not stored).
const MAX_STORED: usize = 256 * 1024 * 1024;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;

/// One TCP segment seen on the interface.
#[derive(Clone, Debug)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// A running capture; [`PacketCapture::stop`] ends it and returns what it saw.
pub struct PacketCapture {
    stop: Arc<AtomicBool>,
    segments: Arc<Mutex<Vec<Segment>>>,
    reader: Option<JoinHandle<io::Result<()>>>,
}

impl PacketCapture {
    /// Starts capturing on `interface` inside `netns` (frames in both directions).
    pub fn start(netns: &Netns, interface: &str) -> anyhow::Result<Self> {
        let socket = netns
            .run(|| open_packet_socket(interface))
            .with_context(|| format!("opening a packet socket on {interface} in {}", netns.path().display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let segments = Arc::new(Mutex::new(Vec::new()));
        let reader = std::thread::Builder::new()
            .name(format!("capture-{interface}"))
            .spawn({
                let (stop, segments) = (stop.clone(), segments.clone());
                move || read_frames(&socket, &stop, &segments)
            })
            .context("starting the capture thread")?;
        Ok(Self { stop, segments, reader: Some(reader) })
    }

    /// Stops the capture and returns the TCP segments it saw, in order.
    pub fn stop(mut self) -> anyhow::Result<Captured> {
        self.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            reader.join().map_err(|_| anyhow::anyhow!("the capture thread panicked"))?.context("reading frames")?;
        }
        let segments = std::mem::take(&mut *self.segments.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Captured { segments })
    }
}

impl Drop for PacketCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// What a capture saw.
pub struct Captured {
    pub segments: Vec<Segment>,
}

impl Captured {
    /// Segments with payload to or from `port`.
    pub fn with_port(&self, port: u16) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(move |s| !s.payload.is_empty() && (s.src.port() == port || s.dst.port() == port))
    }

    /// Payload bytes carried in segments to or from `port`.
    pub fn payload_bytes(&self, port: u16) -> usize {
        self.with_port(port).map(|s| s.payload.len()).sum()
    }

    /// Whether any single segment's payload contains `needle`.
    pub fn contains(&self, needle: &[u8]) -> bool {
        self.segments.iter().any(|s| s.payload.windows(needle.len()).any(|w| w == needle))
    }
}

fn open_packet_socket(interface: &str) -> io::Result<OwnedFd> {
    let name = std::ffi::CString::new(interface).map_err(|_| io::Error::other("interface name has a NUL"))?;
    // SAFETY: plain libc calls with valid arguments; the fd is owned right after creation.
    unsafe {
        let ifindex = libc::if_nametoindex(name.as_ptr());
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETH_P_ALL.to_be()));
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        if libc::bind(fd, (&raw const addr).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Wake up regularly to notice `stop`.
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        let size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const timeout).cast(), size) != 0 {
            return Err(io::Error::last_os_error());
        }
        // A big receive buffer: a burst of segments must not be dropped before we read them.
        let buffer: libc::c_int = 32 * 1024 * 1024;
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&raw const buffer).cast(), size);
        Ok(socket)
    }
}

fn read_frames(socket: &OwnedFd, stop: &AtomicBool, segments: &Mutex<Vec<Segment>>) -> io::Result<()> {
    // Segments offloaded by GSO/GRO can be up to 64 KiB.
    let mut frame = vec![0u8; 128 * 1024];
    let mut stored = 0usize;
    loop {
        // SAFETY: reads into a buffer we own, of the length we pass.
        let n = unsafe { libc::recv(socket.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                continue;
            }
            return Err(error);
        }
        if let Some(segment) = parse_tcp(&frame[..n as usize])
            && stored + segment.payload.len() <= MAX_STORED
        {
            stored += segment.payload.len();
            segments.lock().unwrap_or_else(|p| p.into_inner()).push(segment);
        }
        if stop.load(Ordering::Acquire) {
            // Drain what is already queued before stopping, without waiting for more.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// An Ethernet frame carrying IPv4 TCP, as a segment.
fn parse_tcp(frame: &[u8]) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype != ETH_P_IP {
        return None;
    }
    let ip = frame.get(14..)?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.get(9)? != 6 || header_len < 20 {
        return None;
    }
    let header = ip.get(..header_len)?;
    let src_ip = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst_ip = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    // With GSO the IP total length can be 0 or stale; trust the frame then.
    let end = if total_len >= header_len && total_len <= ip.len() { total_len } else { ip.len() };
    let tcp = ip.get(header_len..end)?;
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    if data_offset < 20 {
        return None;
    }
    let src = SocketAddrV4::new(src_ip, u16::from_be_bytes([tcp[0], tcp[1]]));
    let dst = SocketAddrV4::new(dst_ip, u16::from_be_bytes([tcp[2], tcp[3]]));
    Some(Segment { src, dst, payload: tcp.get(data_offset..)?.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 1, 0, 2];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&15008u16.to_be_bytes());
        tcp[12] = 5 << 4;
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_addresses_ports_and_payload() {
        let s = parse_tcp(&frame(b"marker")).unwrap();
        assert_eq!(s.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "10.1.0.2:15008".parse().unwrap());
        assert_eq!(s.payload, b"marker");
        let captured = Captured { segments: vec![s] };
        assert!(captured.contains(b"ark"));
        assert!(!captured.contains(b"nope"));
        assert_eq!(captured.payload_bytes(15008), 6);
        assert_eq!(captured.payload_bytes(80), 0);
    }

    #[test]
    fn ignores_what_is_not_ipv4_tcp() {
        let mut arp = frame(b"x");
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(parse_tcp(&arp).is_none());
        let mut udp = frame(b"x");
        udp[14 + 9] = 17;
        assert!(parse_tcp(&udp).is_none());
        assert!(parse_tcp(&frame(b"x")[..30]).is_none());
    }
}
