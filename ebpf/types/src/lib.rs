//! The contract between Ambit's eBPF programs and the node proxy: constants, map names, and the
//! `#[repr(C)]` layouts of every map key and value. Both sides compile this crate, so a change here
//! changes both at once; the `const` assertions at the bottom catch accidental layout changes.
//!
//! Addresses are always 16 bytes in network byte order. IPv4 addresses are stored IPv4-mapped
//! (`::ffff:a.b.c.d`) so one key type serves AF_INET sockets, dual-stack AF_INET6 sockets connecting
//! to IPv4 peers, and (later) native IPv6.
#![cfg_attr(not(test), no_std)]

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `SO_MARK` carried by every socket the node proxy opens inside a pod: capture skips it.
pub const PROXY_MARK: u32 = 0x539;
/// In-pod listener that receives the pod's captured outbound connections.
pub const OUTBOUND_PORT: u16 = 15001;
/// In-pod listener that receives plaintext inbound connections.
pub const INBOUND_PLAINTEXT_PORT: u16 = 15006;
/// In-pod listener for HBONE (mTLS tunnel) connections.
pub const HBONE_PORT: u16 = 15008;

/// Version of the map layouts below. It is part of the pin path, so a node proxy with a different
/// layout never adopts maps it cannot read.
pub const LAYOUT_VERSION: u32 = 1;

/// Map names, as declared in the eBPF object and used for pin paths. Kernel object names are
/// limited to 15 characters.
pub mod map_names {
    /// netns cookie → [`PodEntry`](super::PodEntry): the enrollment switch.
    pub const PODS: &str = "AMBIT_PODS";
    /// socket cookie → original destination [`Endpoint`](super::Endpoint) of a captured connect.
    pub const PENDING: &str = "AMBIT_PENDING";
    /// client [`Endpoint`](super::Endpoint) → original destination, read by the proxy after accept.
    pub const ORIG_DST: &str = "AMBIT_ORIG_DST";
    /// the proxy's in-pod upstream socket [`Endpoint`](super::Endpoint) → the real client it
    /// stands in for (so an app's `getpeername` shows the real peer).
    pub const INBOUND_PEERS: &str = "AMBIT_IN_PEERS";
    /// [`ListenerKey`](super::ListenerKey) → in-pod listening socket, for `sk_lookup`.
    pub const LISTENERS: &str = "AMBIT_LISTENERS";
    /// per-CPU `u64` counters indexed by [`Counter`](super::Counter).
    pub const COUNTERS: &str = "AMBIT_COUNTERS";
}

/// Program names (the Rust function names in the eBPF crate).
pub mod program_names {
    pub const CONNECT4: &str = "ambit_connect4";
    pub const CONNECT6: &str = "ambit_connect6";
    pub const SOCK_OPS: &str = "ambit_sock_ops";
    pub const SK_LOOKUP: &str = "ambit_sk_lookup";
    pub const GETPEERNAME4: &str = "ambit_getpeername4";
    pub const GETPEERNAME6: &str = "ambit_getpeername6";
}

/// Capacity of the hash maps; the LRU ones evict the oldest entry when full.
pub mod capacity {
    pub const PODS: u32 = 4096;
    pub const PENDING: u32 = 65536;
    pub const ORIG_DST: u32 = 65536;
    pub const INBOUND_PEERS: u32 = 65536;
    pub const LISTENERS: u32 = 8192;
}

const V4_MAPPED_PREFIX: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// An IP address: four words whose in-memory bytes are the address in network byte order, exactly
/// as the kernel presents `user_ip6` / `local_ip6`. IPv4 is IPv4-mapped.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Ip {
    pub words: [u32; 4],
}

impl Ip {
    /// From a kernel IPv4 field (network byte order in memory).
    #[inline(always)]
    pub const fn from_kernel_v4(ip4: u32) -> Self {
        Self { words: [0, 0, V4_MAPPED_PREFIX, ip4] }
    }

    /// From a kernel IPv6 field (network byte order in memory).
    #[inline(always)]
    pub const fn from_kernel_v6(ip6: [u32; 4]) -> Self {
        Self { words: ip6 }
    }

    /// The kernel IPv4 field, if this is an IPv4(-mapped) address.
    #[inline(always)]
    pub const fn kernel_v4(&self) -> Option<u32> {
        if self.words[0] == 0 && self.words[1] == 0 && self.words[2] == V4_MAPPED_PREFIX {
            Some(self.words[3])
        } else {
            None
        }
    }

    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from_kernel_v4(u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::from_kernel_v4(u32::from_ne_bytes(v4.octets())),
                None => {
                    let o = v6.octets();
                    let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                    Self { words: [w(0), w(4), w(8), w(12)] }
                }
            },
        }
    }

    /// IPv4-mapped addresses come back as `IpAddr::V4`.
    pub fn to_ip(&self) -> IpAddr {
        if let Some(v4) = self.kernel_v4() {
            return IpAddr::V4(Ipv4Addr::from(v4.to_ne_bytes()));
        }
        let mut o = [0u8; 16];
        for (i, w) in self.words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

/// A transport endpoint: address plus port in host byte order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Endpoint {
    pub ip: Ip,
    pub port: u16,
    pub _pad: u16,
}

impl Endpoint {
    #[inline(always)]
    pub const fn new(ip: Ip, port: u16) -> Self {
        Self { ip, port, _pad: 0 }
    }

    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self::new(Ip::from_ip(addr.ip()), addr.port())
    }

    /// IPv4-mapped endpoints come back as `SocketAddr::V4`.
    pub fn to_socket_addr(&self) -> SocketAddr {
        match self.ip.to_ip() {
            IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, self.port)),
            IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, 0)),
        }
    }
}

/// Value of [`map_names::PODS`]: what capture needs to know about an enrolled pod.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct PodEntry {
    /// The pod's IPv4 address, network byte order (0 if none).
    pub ip4: u32,
    /// Reserved for per-pod behaviour flags; must be 0 for now.
    pub flags: u32,
}

/// Which in-pod listener a [`ListenerKey`] names.
pub mod listener_role {
    pub const INBOUND_PLAINTEXT: u32 = 1;
    pub const HBONE: u32 = 2;
}

/// Key of [`map_names::LISTENERS`]: the pod address a listener serves and its role.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct ListenerKey {
    pub ip: Ip,
    pub role: u32,
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Every decision the eBPF programs take is counted (per CPU) at `Counter as u32`.
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// Stable snake_case name, used in the admin API and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// connect4: an enrolled pod's TCP connect was sent to its outbound listener.
    Connect4Redirected = "connect4_redirected",
    /// connect6: a dual-stack socket's connect to an IPv4 destination was sent to the listener.
    Connect6MappedRedirected = "connect6_mapped_redirected",
    /// connect: the socket carries the proxy's mark.
    ConnectBypassMark = "connect_bypass_mark",
    /// connect: the socket's network namespace is not an enrolled pod.
    ConnectBypassNotEnrolled = "connect_bypass_not_enrolled",
    /// connect: the destination is the pod's own IP.
    ConnectBypassSelf = "connect_bypass_self",
    /// connect: the destination is loopback.
    ConnectBypassLoopback = "connect_bypass_loopback",
    /// connect6: a native IPv6 destination; IPv6 pod addressing is not supported yet.
    ConnectBypassIpv6 = "connect_bypass_ipv6",
    /// connect: the original destination could not be recorded, so the connect was refused.
    ConnectRefusedNoRecord = "connect_refused_no_record",
    /// sock_ops: the original destination was re-keyed by the client's 4-tuple.
    SockOpsRekeyed = "sock_ops_rekeyed",
    /// sock_ops: re-keying failed (map full); the proxy will reset the connection.
    SockOpsRekeyFailed = "sock_ops_rekey_failed",
    /// sock_ops: a captured socket closed and its map entries were removed.
    SockOpsCleanedUp = "sock_ops_cleaned_up",
    /// sk_lookup: an inbound connection was given to the plaintext listener.
    LookupAssignedPlaintext = "lookup_assigned_plaintext",
    /// sk_lookup: an inbound connection to port 15008 was given to the HBONE listener.
    LookupAssignedHbone = "lookup_assigned_hbone",
    /// sk_lookup: the connection comes from the pod itself or loopback; left alone.
    LookupPassLocal = "lookup_pass_local",
    /// sk_lookup: no proxy listener for an enrolled pod (proxy down): refused (fail closed).
    LookupMissRefused = "lookup_miss_refused",
    /// getpeername: a captured client was shown its original destination.
    PeernameOutboundRewritten = "peername_outbound_rewritten",
    /// getpeername: an app was shown the real client instead of the proxy's socket.
    PeernameInboundRewritten = "peername_inbound_rewritten",
}

/// Size of the counters array; leaves room for new counters without a layout change.
pub const COUNTER_SLOTS: u32 = 32;

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers, and have no padding
    // the compiler could leave uninitialised (every field is explicit, checked below).
    unsafe impl aya::Pod for super::Ip {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Endpoint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PodEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ListenerKey {}
}

// The kernel sees these layouts: a change must be deliberate (and bump LAYOUT_VERSION).
const _: () = assert!(core::mem::size_of::<Ip>() == 16);
const _: () = assert!(core::mem::size_of::<Endpoint>() == 20);
const _: () = assert!(core::mem::size_of::<PodEntry>() == 8);
const _: () = assert!(core::mem::size_of::<ListenerKey>() == 20);
const _: () = assert!(Counter::ALL.len() as u32 <= COUNTER_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_as_mapped() {
        let addr: SocketAddr = "10.1.0.2:8080".parse().unwrap();
        let ep = Endpoint::from_socket_addr(addr);
        assert_eq!(ep.ip.kernel_v4(), Some(u32::from_ne_bytes([10, 1, 0, 2])));
        assert_eq!(ep.to_socket_addr(), addr);
    }

    #[test]
    fn mapped_v6_socket_addr_equals_v4() {
        let mapped: SocketAddr = "[::ffff:10.1.0.2]:80".parse().unwrap();
        let v4: SocketAddr = "10.1.0.2:80".parse().unwrap();
        assert_eq!(Endpoint::from_socket_addr(mapped), Endpoint::from_socket_addr(v4));
    }

    #[test]
    fn native_v6_round_trips() {
        let addr: SocketAddr = "[fd00::1:2]:443".parse().unwrap();
        let ep = Endpoint::from_socket_addr(addr);
        assert_eq!(ep.ip.kernel_v4(), None);
        assert_eq!(ep.to_socket_addr(), addr);
    }

    #[test]
    fn counter_names_are_unique() {
        for (i, a) in Counter::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i, "counters are indexed by declaration order");
            for b in &Counter::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
