//! `getpeername()` (and `accept()`'s address) show apps their real peers:
//! - a captured client is connected to `podIP:15001`; it sees its original destination;
//! - an app accepting a connection the node proxy relays sees the real client, not the proxy's
//!   in-pod socket.

use ambit_ebpf_types::{Counter, Endpoint, Ip};
use aya_ebpf::{helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr, programs::SockAddrContext};

use crate::{
    connect::{read_ip6, write_ip6},
    counters::count,
    maps::{AMBIT_IN_PEERS, AMBIT_PENDING},
};

const ALLOW: i32 = 1;

#[cgroup_sock_addr(getpeername4)]
fn ambit_getpeername4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the kernel hands us a valid context for the duration of the program.
    let sa = unsafe { &mut *ctx.sock_addr };
    let peer = Endpoint::new(Ip::from_kernel_v4(sa.user_ip4), u16::from_be(sa.user_port as u16));
    if let Some(real) = real_peer(&ctx, &peer)
        && let Some(ip4) = real.ip.kernel_v4()
    {
        sa.user_ip4 = ip4;
        sa.user_port = u32::from(real.port.to_be());
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
fn ambit_getpeername6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as above.
    let sa = unsafe { &mut *ctx.sock_addr };
    let peer = Endpoint::new(Ip::from_kernel_v6(read_ip6(sa)), u16::from_be(sa.user_port as u16));
    if let Some(real) = real_peer(&ctx, &peer) {
        write_ip6(sa, real.ip.words);
        sa.user_port = u32::from(real.port.to_be());
    }
    ALLOW
}

#[inline(always)]
fn real_peer(ctx: &SockAddrContext, peer: &Endpoint) -> Option<Endpoint> {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // SAFETY: values are copied out immediately.
    if let Some(orig) = unsafe { AMBIT_PENDING.get(&cookie) } {
        count(Counter::PeernameOutboundRewritten);
        return Some(*orig);
    }
    // SAFETY: as above.
    if let Some(real) = unsafe { AMBIT_IN_PEERS.get(peer) } {
        count(Counter::PeernameInboundRewritten);
        return Some(*real);
    }
    None
}
