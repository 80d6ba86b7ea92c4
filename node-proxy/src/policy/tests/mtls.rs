//! PeerAuthentication at the node proxy: STRICT refuses plaintext, PERMISSIVE (and unset)
//! admits it, `port_mtls` overrides by the port the workload listens on.

use ambit_common::api::v1::{MtlsMode, Workload};

use crate::policy::{mtls::effective_mode, plaintext_allowed};

fn workload(mode: MtlsMode, ports: &[(u32, i32)]) -> Workload {
    Workload { mtls: mode as i32, port_mtls: ports.iter().copied().collect(), ..Workload::default() }
}

const STRICT: i32 = MtlsMode::Strict as i32;
const PERMISSIVE: i32 = MtlsMode::Permissive as i32;

#[test]
fn workload_mode() {
    assert!(!plaintext_allowed(&workload(MtlsMode::Strict, &[]), 8080), "STRICT refuses plaintext");
    assert!(plaintext_allowed(&workload(MtlsMode::Permissive, &[]), 8080), "PERMISSIVE admits it");
    // Istio's default is PERMISSIVE; the control plane sends it explicitly, but unset means the same.
    assert!(plaintext_allowed(&workload(MtlsMode::Unspecified, &[]), 8080));
    assert_eq!(effective_mode(&workload(MtlsMode::Unspecified, &[]), 8080), MtlsMode::Permissive);
}

#[test]
fn port_overrides_both_ways() {
    let strict_but_9000 = workload(MtlsMode::Strict, &[(9000, PERMISSIVE)]);
    assert!(plaintext_allowed(&strict_but_9000, 9000), "a PERMISSIVE port on a STRICT workload");
    assert!(!plaintext_allowed(&strict_but_9000, 9001), "other ports keep STRICT");
    let permissive_but_5432 = workload(MtlsMode::Permissive, &[(5432, STRICT)]);
    assert!(!plaintext_allowed(&permissive_but_5432, 5432), "a STRICT port on a PERMISSIVE workload");
    assert!(plaintext_allowed(&permissive_but_5432, 80), "other ports keep PERMISSIVE");
    let unset_default = workload(MtlsMode::Unspecified, &[(5432, STRICT)]);
    assert!(!plaintext_allowed(&unset_default, 5432) && plaintext_allowed(&unset_default, 80));
}

#[test]
fn unset_port_inherits_and_unknown_modes_fail_closed() {
    let unset_port = workload(MtlsMode::Strict, &[(9000, MtlsMode::Unspecified as i32)]);
    assert!(!plaintext_allowed(&unset_port, 9000), "an UNSET port inherits the workload's STRICT");
    let unknown_port = workload(MtlsMode::Permissive, &[(9000, 42)]);
    assert!(!plaintext_allowed(&unknown_port, 9000), "a mode this proxy does not know refuses plaintext");
    let unknown = Workload { mtls: 42, ..Workload::default() };
    assert_eq!(effective_mode(&unknown, 80), MtlsMode::Strict);
}
