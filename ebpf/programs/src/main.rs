//! Ambit's traffic capture, in the kernel. See `docs/architecture.md` ("eBPF capture").
//!
//! | program | attach point | job |
//! |---|---|---|
//! | `ambit_connect4/6` | capture-root cgroup | enrolled pod's TCP connect → its outbound listener |
//! | `ambit_sock_ops` | capture-root cgroup | re-key the original destination by the client 4-tuple; clean up at close |
//! | `ambit_sk_lookup` | each enrolled pod's netns | inbound TCP → the in-pod plaintext or HBONE listener |
//! | `ambit_getpeername4/6` | capture-root cgroup | apps see their real peers, not the proxy |
//!
//! The enrollment switch is `AMBIT_PODS` (netns cookie → pod): a socket whose network namespace is
//! not in it is never touched. Sockets marked with `PROXY_MARK` (the node proxy's own) are never
//! captured.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod peername;
#[cfg(target_arch = "bpf")]
mod sk_lookup;
#[cfg(target_arch = "bpf")]
mod sock_ops;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any path that could reach here, so this is never executed.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";

/// On the host this crate is only type-checked (`cargo check --workspace`); the real artifact is
/// the `bpfel-unknown-none` object that node-proxy's build script produces.
#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("ambit-ebpf is an eBPF object: node-proxy's build script compiles it for bpfel-unknown-none");
    std::process::exit(2);
}
