//! Inbound capture: in an enrolled pod's network namespace, every new TCP connection from outside
//! the pod is handed to the node proxy's in-pod listener: the HBONE one for port 15008, the
//! plaintext one otherwise. The accepted socket's local address is the original destination.
//! With no listener (node proxy down) the connection is refused at once: fail closed.

use ambit_ebpf_types::{Counter, HBONE_PORT, Ip, ListenerKey, listener_role};
use aya_ebpf::{bindings::sk_action, macros::sk_lookup, programs::SkLookupContext};

use crate::{counters::count, maps::AMBIT_LISTENERS};

const IPPROTO_TCP: u32 = 6;
const AF_INET: u32 = 2;

#[sk_lookup]
fn ambit_sk_lookup(ctx: SkLookupContext) -> u32 {
    // SAFETY: the kernel hands us a valid context for the duration of the program.
    let lookup = unsafe { &*ctx.lookup };
    if lookup.protocol != IPPROTO_TCP || lookup.family != AF_INET {
        return sk_action::SK_PASS;
    }
    // Traffic the pod sends to itself (including redirected outbound connections reaching
    // podIP:15001 and the proxy's own connections to the app) is local. Note: the ingress
    // interface cannot tell us this: for local deliveries the kernel reports the device owning
    // the address (eth0), not lo.
    if lookup.remote_ip4 == lookup.local_ip4 || is_loopback(lookup.remote_ip4) || is_loopback(lookup.local_ip4) {
        count(Counter::LookupPassLocal);
        return sk_action::SK_PASS;
    }
    let hbone = lookup.local_port == u32::from(HBONE_PORT);
    let key = ListenerKey {
        ip: Ip::from_kernel_v4(lookup.local_ip4),
        role: if hbone { listener_role::HBONE } else { listener_role::INBOUND_PLAINTEXT },
    };
    match AMBIT_LISTENERS.redirect_sk_lookup(&ctx, key, 0) {
        Ok(()) => {
            count(if hbone { Counter::LookupAssignedHbone } else { Counter::LookupAssignedPlaintext });
            sk_action::SK_PASS
        }
        Err(_) => {
            // SK_DROP makes the kernel answer the SYN with a RST (connection refused).
            count(Counter::LookupMissRefused);
            sk_action::SK_DROP
        }
    }
}

#[inline(always)]
fn is_loopback(ip4: u32) -> bool {
    u32::from_be(ip4) >> 24 == 127
}
