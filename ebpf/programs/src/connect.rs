//! Outbound capture: an enrolled pod's TCP `connect()` is rewritten to the pod's own outbound
//! listener (`podIP:15001`, a socket the node proxy owns inside the pod's netns). The original
//! destination is remembered per socket (by socket cookie) until the socket closes.

use core::ptr::{read_volatile, write_volatile};

use ambit_ebpf_types::{Counter, Endpoint, Ip, OUTBOUND_PORT, PROXY_MARK, PodEntry};
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};

use crate::{
    counters::count,
    maps::{AMBIT_PENDING, AMBIT_PODS},
};

const IPPROTO_TCP: u32 = 6;
/// cgroup/connect return values.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
fn ambit_connect4(ctx: SockAddrContext) -> i32 {
    let Some(pod) = enrolled_pod(&ctx) else { return ALLOW };
    // SAFETY: the kernel hands us a valid context for the duration of the program.
    let sa = unsafe { &mut *ctx.sock_addr };
    let dst = sa.user_ip4;
    if let Some(bypass) = bypass_reason(dst, &pod) {
        count(bypass);
        return ALLOW;
    }
    let orig = Endpoint::new(Ip::from_kernel_v4(dst), u16::from_be(sa.user_port as u16));
    if !remember(&ctx, &orig) {
        return REFUSE;
    }
    sa.user_ip4 = pod.ip4;
    sa.user_port = u32::from(OUTBOUND_PORT.to_be());
    count(Counter::Connect4Redirected);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
fn ambit_connect6(ctx: SockAddrContext) -> i32 {
    let Some(pod) = enrolled_pod(&ctx) else { return ALLOW };
    // SAFETY: as above.
    let sa = unsafe { &mut *ctx.sock_addr };
    let ip = Ip::from_kernel_v6(read_ip6(sa));
    let Some(dst) = ip.kernel_v4() else {
        // Native IPv6: loopback is never captured; anything else is not supported yet (pods have
        // IPv4 addresses only), which the counter makes visible.
        count(if is_ip6_loopback(&ip) { Counter::ConnectBypassLoopback } else { Counter::ConnectBypassIpv6 });
        return ALLOW;
    };
    if let Some(bypass) = bypass_reason(dst, &pod) {
        count(bypass);
        return ALLOW;
    }
    let orig = Endpoint::new(ip, u16::from_be(sa.user_port as u16));
    if !remember(&ctx, &orig) {
        return REFUSE;
    }
    write_ip6(sa, Ip::from_kernel_v4(pod.ip4).words);
    sa.user_port = u32::from(OUTBOUND_PORT.to_be());
    count(Counter::Connect6MappedRedirected);
    ALLOW
}

/// The enrolled pod this TCP socket belongs to, or `None` if capture must not touch it.
#[inline(always)]
fn enrolled_pod(ctx: &SockAddrContext) -> Option<PodEntry> {
    // SAFETY: valid context, see above.
    let sa = unsafe { &*ctx.sock_addr };
    if sa.protocol != IPPROTO_TCP {
        return None;
    }
    // SAFETY: reading the `sk` member of the context union, which the kernel always fills here.
    let sk = unsafe { sa.__bindgen_anon_1.sk };
    // SAFETY: `sk` is non-null and points to the kernel's `bpf_sock` view of this socket.
    if !sk.is_null() && unsafe { (*sk).mark } == PROXY_MARK {
        count(Counter::ConnectBypassMark);
        return None;
    }
    // SAFETY: helper call with the program's own context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    // SAFETY: the value is copied out before any other map operation.
    match unsafe { AMBIT_PODS.get(&netns) } {
        Some(pod) => Some(*pod),
        None => {
            count(Counter::ConnectBypassNotEnrolled);
            None
        }
    }
}

/// Why a connect from `pod` to the IPv4 address `dst` (network byte order) stays uncaptured.
#[inline(always)]
fn bypass_reason(dst: u32, pod: &PodEntry) -> Option<Counter> {
    if dst == pod.ip4 || dst == 0 {
        Some(Counter::ConnectBypassSelf)
    } else if u32::from_be(dst) >> 24 == 127 {
        Some(Counter::ConnectBypassLoopback)
    } else {
        None
    }
}

/// Record the original destination for this socket; `false` means capture must fail closed.
#[inline(always)]
fn remember(ctx: &SockAddrContext, orig: &Endpoint) -> bool {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    if AMBIT_PENDING.insert(&cookie, orig, 0).is_err() {
        count(Counter::ConnectRefusedNoRecord);
        return false;
    }
    true
}

#[inline(always)]
fn is_ip6_loopback(ip: &Ip) -> bool {
    ip.words[0] == 0 && ip.words[1] == 0 && ip.words[2] == 0 && ip.words[3] == u32::from_ne_bytes([0, 0, 0, 1])
}

// The verifier only accepts 4-byte accesses to `user_ip6[i]`; volatile keeps LLVM from merging
// them into 8-byte loads or stores.
#[inline(always)]
pub(crate) fn read_ip6(sa: &bpf_sock_addr) -> [u32; 4] {
    // SAFETY: in-bounds reads of the context.
    unsafe {
        [
            read_volatile(&sa.user_ip6[0]),
            read_volatile(&sa.user_ip6[1]),
            read_volatile(&sa.user_ip6[2]),
            read_volatile(&sa.user_ip6[3]),
        ]
    }
}

#[inline(always)]
pub(crate) fn write_ip6(sa: &mut bpf_sock_addr, words: [u32; 4]) {
    // SAFETY: in-bounds writes of the context, which these hooks may modify.
    unsafe {
        write_volatile(&mut sa.user_ip6[0], words[0]);
        write_volatile(&mut sa.user_ip6[1], words[1]);
        write_volatile(&mut sa.user_ip6[2], words[2]);
        write_volatile(&mut sa.user_ip6[3], words[3]);
    }
}
