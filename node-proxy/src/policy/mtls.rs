//! PeerAuthentication at the node proxy: whether a workload accepts plaintext on a port.
//!
//! The control plane has already resolved Istio's precedence (mesh < namespace < workload,
//! UNSET inherits) and turned DISABLE into PERMISSIVE, as Istio ambient does: HBONE between
//! enrolled pods is always mTLS, so DISABLE can only mean "also accept plaintext"
//! (`control-plane/src/compile/node/mtls.rs`). What is left here is the port override:
//! `port_mtls` is keyed by the port the workload listens on ("The port refers to the port of
//! the workload, not the port of the Kubernetes service",
//! <https://istio.io/latest/docs/reference/config/security/peer_authentication/>), and an
//! unset port inherits the workload's mode. With nothing set the mode is PERMISSIVE, Istio's
//! default. A mode value this proxy does not know (only a newer control plane could send one)
//! is taken as STRICT: refusing plaintext is the side that cannot leak.

use ambit_common::api::v1::{MtlsMode, Workload};

/// The mode that governs plaintext to `workload` on `target_port`: PERMISSIVE or STRICT,
/// never UNSPECIFIED.
pub(super) fn effective_mode(workload: &Workload, target_port: u16) -> MtlsMode {
    workload
        .port_mtls
        .get(&u32::from(target_port))
        .and_then(|&raw| set_mode(raw))
        .or_else(|| set_mode(workload.mtls))
        .unwrap_or(MtlsMode::Permissive)
}

/// Whether a plaintext connection (not HBONE) to `workload` on `target_port` may proceed:
/// STRICT refuses it, PERMISSIVE admits it.
pub(crate) fn plaintext_allowed(workload: &Workload, target_port: u16) -> bool {
    effective_mode(workload, target_port) != MtlsMode::Strict
}

/// `None` when unset (inherit); unknown values fail closed.
fn set_mode(raw: i32) -> Option<MtlsMode> {
    match MtlsMode::try_from(raw) {
        Ok(MtlsMode::Unspecified) => None,
        Ok(mode) => Some(mode),
        Err(_) => {
            tracing::debug!(mode = raw, "unknown mTLS mode from the control plane; treating it as STRICT");
            Some(MtlsMode::Strict)
        }
    }
}
