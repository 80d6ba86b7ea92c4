//! Who sent a request, as the waypoint knows it from HBONE, and the conditions on it
//! (`sourceLabels` resolved to workloads, `sourceNamespace`, TCP destination subnets).

use std::net::IpAddr;

use ambit_common::{
    api::v1::{IpNet, SourceWorkloads},
    identity::SpiffeId,
};

/// The peer of a request: the source address of the tunnelled connection and the SPIFFE id its
/// certificate proved (`None` for a source outside the mesh).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub address: IpAddr,
    pub identity: Option<SpiffeId>,
}

/// `sourceLabels` (as the workloads they select) and `sourceNamespace`, compiled.
pub(super) struct SourceCondition {
    /// `None`: any source. `Some(empty)`: no source.
    workloads: Option<Vec<(Vec<IpAddr>, SpiffeId)>>,
    namespace: Option<String>,
}

impl SourceCondition {
    pub(super) fn compile(workloads: Option<&SourceWorkloads>, namespace: &str) -> Result<Self, String> {
        let workloads = workloads
            .map(|list| {
                list.workloads
                    .iter()
                    .map(|w| {
                        let identity = w
                            .identity
                            .parse::<SpiffeId>()
                            .map_err(|e| format!("workload {}: identity {:?}: {e}", w.uid, w.identity))?;
                        let addresses = w
                            .addresses
                            .iter()
                            .map(|a| {
                                address(a).ok_or_else(|| format!("workload {}: an address of {} bytes", w.uid, a.len()))
                            })
                            .collect::<Result<Vec<_>, String>>()?;
                        Ok((addresses, identity))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()?;
        Ok(Self { workloads, namespace: (!namespace.is_empty()).then(|| namespace.to_owned()) })
    }

    /// Both the address and the verified identity must be a selected workload's: an address alone
    /// is only as good as the network, an identity alone is shared by every pod of a service
    /// account.
    pub(super) fn holds(&self, source: &Source) -> bool {
        let workload_ok = self.workloads.as_ref().is_none_or(|workloads| {
            source.identity.as_ref().is_some_and(|id| {
                workloads.iter().any(|(addresses, identity)| identity == id && addresses.contains(&source.address))
            })
        });
        let namespace_ok =
            self.namespace.as_deref().is_none_or(|ns| source.identity.as_ref().is_some_and(|id| id.namespace() == ns));
        workload_ok && namespace_ok
    }
}

/// An IP prefix.
pub(crate) struct Subnet {
    network: IpAddr,
    prefix_len: u32,
}

impl Subnet {
    pub(crate) fn compile(net: &IpNet) -> Result<Self, String> {
        let network = address(&net.address).ok_or_else(|| format!("an address of {} bytes", net.address.len()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if net.prefix_len > max {
            return Err(format!("prefix length {} is longer than {max}", net.prefix_len));
        }
        Ok(Self { network, prefix_len: net.prefix_len })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let (network, ip, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u128::from(n.to_bits()), u128::from(a.to_bits()), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (n.to_bits(), a.to_bits(), 128),
            _ => return false,
        };
        let mask =
            if self.prefix_len == 0 { 0 } else { (!0u128 << (bits - self.prefix_len)) & (!0u128 >> (128 - bits)) };
        network & mask == ip & mask
    }
}

/// 4 or 16 bytes as an address.
fn address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}
