//! PeerAuthentication: the effective mTLS mode of a workload, with per-port overrides.
//!
//! Istio ambient's precedence (`convertedSelectorPeerAuthentications` in istiod's
//! `ambient/authorization.go`; user docs:
//! <https://istio.io/latest/docs/reference/config/security/peer_authentication/>):
//! 1. mesh-wide: the namespace-wide policy of the root namespace;
//! 2. namespace-wide: a policy without selector in the workload's namespace;
//! 3. workload: a policy in the workload's namespace whose selector matches its labels.
//!
//! Each level that is not UNSET replaces the one before; with nothing set the mode is
//! PERMISSIVE. DISABLE is treated as PERMISSIVE: ambient has no way to turn mTLS off for
//! traffic between enrolled pods, and istiod treats the two the same for ztunnel.
//! Port-level modes come only from the workload policy (validation rejects them elsewhere)
//! and are keyed by the port the workload listens on; an UNSET port inherits.
//!
//! Selector policies in the root namespace are ignored, as istiod does for ambient. Where
//! several policies compete at one level Istio picks the oldest; the model has no creation
//! time, so Ambit picks the first by name — deterministic, and documented for users.

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::MtlsMode as Mode,
    config::{
        Snapshot,
        model::{Labels, MtlsMode, PeerAuthentication},
    },
};

pub(super) struct PeerAuthentications<'a> {
    root: &'a str,
    /// The first (by name) policy without selector in each namespace; the root namespace's
    /// is the mesh-wide policy.
    namespace_wide: BTreeMap<&'a str, &'a PeerAuthentication>,
    /// Selector policies by namespace, in name order; none for the root namespace.
    selectors: BTreeMap<&'a str, Vec<&'a PeerAuthentication>>,
}

/// A workload's mTLS modes, in the API's terms.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Effective {
    pub(super) mode: Mode,
    pub(super) ports: BTreeMap<u16, Mode>,
}

impl<'a> PeerAuthentications<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, root: &'a str) -> Self {
        let mut out = Self { root, namespace_wide: BTreeMap::new(), selectors: BTreeMap::new() };
        // Snapshot order is namespace then name, so "first inserted" is "first by name".
        for pa in snapshot.peer_authentications() {
            let namespace = pa.meta.namespace.as_str();
            match &pa.selector {
                None => {
                    out.namespace_wide.entry(namespace).or_insert(pa);
                }
                Some(_) if namespace != root => out.selectors.entry(namespace).or_default().push(pa),
                Some(_) => {}
            }
        }
        out
    }

    pub(super) fn effective(&self, namespace: &str, labels: &Labels) -> Effective {
        let mesh = self.namespace_wide.get(self.root).copied();
        let namespace_wide = if namespace == self.root { None } else { self.namespace_wide.get(namespace).copied() };
        let workload = self
            .selectors
            .get(namespace)
            .and_then(|list| list.iter().copied().find(|pa| pa.selector.as_ref().is_some_and(|s| s.matches(labels))));
        let mut mode = Mode::Permissive;
        for pa in [mesh, namespace_wide, workload].into_iter().flatten() {
            if let Some(m) = pa.mtls {
                mode = api_mode(m);
            }
        }
        let ports = workload
            .map(|pa| pa.port_level_mtls.iter().filter_map(|(port, m)| m.map(|m| (*port, api_mode(m)))).collect())
            .unwrap_or_default();
        Effective { mode, ports }
    }
}

fn api_mode(mode: MtlsMode) -> Mode {
    match mode {
        MtlsMode::Strict => Mode::Strict,
        // Ambient cannot turn mTLS off between enrolled pods: DISABLE means "also accept
        // plaintext", which is PERMISSIVE (the proto says so too).
        MtlsMode::Permissive | MtlsMode::Disable => Mode::Permissive,
    }
}
