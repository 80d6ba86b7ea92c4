//! Validated ServiceEntry.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ExportTo, IpBlock, Labels, ObjectMeta, Selector};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceEntry {
    pub meta: ObjectMeta,
    pub hosts: Vec<String>,
    pub addresses: Vec<IpBlock>,
    pub ports: Vec<SePort>,
    pub location: Location,
    pub resolution: Resolution,
    pub endpoints: Vec<WorkloadEntry>,
    pub workload_selector: Option<Selector>,
    pub export_to: ExportTo,
    pub subject_alt_names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SePort {
    pub number: u16,
    /// Upper-case Istio protocol name (`HTTP`, `TCP`, …); `None` means sniffed.
    pub protocol: Option<String>,
    pub name: String,
    pub target_port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkloadEntry {
    /// An IP, or a host name for DNS resolution.
    pub address: String,
    /// Service port name → endpoint port.
    pub ports: BTreeMap<String, u16>,
    pub labels: Labels,
    pub network: Option<String>,
    pub locality: Option<String>,
    pub weight: Option<u32>,
    pub service_account: Option<String>,
}
