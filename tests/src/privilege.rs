//! Privileged tests: they need root (network namespaces, cgroups, bpffs, eBPF).

use std::io::Write;

/// True if the test may go on. Without root: panics in CI (env `CI`), otherwise prints a loud
/// SKIPPED warning and returns false.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    if crate::config::in_ci() {
        panic!("privileged test {test} running in CI without root");
    }
    // Written to the stderr handle, not with `eprintln!`: libtest captures the print macros of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED: {test}\n\
         !! this test needs root (network namespaces, cgroups, eBPF);\n\
         !! run it as root (e.g. `sudo -E cargo test`) — it passes vacuously now.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// Returns from the calling test unless [`require_root`] says it may go on.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
}
