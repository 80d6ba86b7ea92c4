//! Re-keys a captured connection's original destination by the client's address once the kernel
//! has chosen the source port (`TCP_CONNECT_CB`, before the SYN leaves), so the node proxy can find
//! it from `accept()`'s peer address. Captured sockets also ask for state callbacks, so their
//! entries are removed when they close: the maps stay as small as the set of live connections.

use core::ptr::read_volatile;

use ambit_ebpf_types::{Counter, Endpoint, Ip};
use aya_ebpf::{
    bindings::{BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE},
    helpers::generated::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
};

use crate::{
    counters::count,
    maps::{AMBIT_ORIG_DST, AMBIT_PENDING},
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sock_ops]
fn ambit_sock_ops(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => on_connect(&ctx),
        BPF_SOCK_OPS_STATE_CB if ctx.arg(1) == BPF_TCP_CLOSE => on_close(&ctx),
        _ => {}
    }
    1
}

#[inline(always)]
fn on_connect(ctx: &SockOpsContext) {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    // SAFETY: the value is copied before any other map operation.
    let Some(orig) = (unsafe { AMBIT_PENDING.get(&cookie) }).copied() else { return };
    let Some(client) = local_endpoint(ctx) else { return };
    if AMBIT_ORIG_DST.insert(&client, &orig, 0).is_ok() {
        count(Counter::SockOpsRekeyed);
    } else {
        count(Counter::SockOpsRekeyFailed);
    }
    let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
}

#[inline(always)]
fn on_close(ctx: &SockOpsContext) {
    // SAFETY: helper call with the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    let _ = AMBIT_PENDING.remove(&cookie);
    if let Some(client) = local_endpoint(ctx) {
        let _ = AMBIT_ORIG_DST.remove(&client);
    }
    count(Counter::SockOpsCleanedUp);
}

#[inline(always)]
fn local_endpoint(ctx: &SockOpsContext) -> Option<Endpoint> {
    let ip = match ctx.family() {
        AF_INET => Ip::from_kernel_v4(ctx.local_ip4()),
        // SAFETY: in-bounds 4-byte reads of the context (the verifier rejects wider ones).
        AF_INET6 => Ip::from_kernel_v6(unsafe {
            let ops = &*ctx.ops;
            [
                read_volatile(&ops.local_ip6[0]),
                read_volatile(&ops.local_ip6[1]),
                read_volatile(&ops.local_ip6[2]),
                read_volatile(&ops.local_ip6[3]),
            ]
        }),
        _ => return None,
    };
    Some(Endpoint::new(ip, ctx.local_port() as u16))
}
