//! ServiceEntries → `Service` resources, one per host, named
//! `<namespace>/<serviceentry name>/<host>`: unambiguous next to Kubernetes Services (whose
//! names have no `/`), and two ServiceEntries declaring the same host stay two resources.
//!
//! - VIPs: the single addresses in `addresses`. CIDR blocks are skipped: they describe a range
//!   to match, not an address a client connects to, and the API has no field for them.
//! - Ports: `targetPort`, else the port number, is each endpoint's default port.
//! - Endpoints: from `endpoints[]` with an IP address (address-only; a per-endpoint
//!   `ports[<port name>]` overrides the target port); host names (DNS resolution) and Unix
//!   sockets have no place in the API and are skipped. Or, with `workloadSelector`, the
//!   workload pods of the ServiceEntry's namespace whose labels match, ready when running.
//! - Not carried: `location`, `resolution`, `exportTo` (every node proxy receives every
//!   service), `subjectAltNames`.

use std::{collections::BTreeMap, net::IpAddr};

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::model::{PodPhase, SePort, ServiceEntry},
};

use super::{
    index::{self, Index},
    ip_bytes, resource,
    waypoint::{self, Traffic},
};

pub(super) fn compile(index: &Index<'_>) -> Vec<Resource> {
    let mut out = Vec::new();
    for se in index.snapshot.service_entries() {
        let endpoints = endpoints(index, se);
        for host in &se.hosts {
            let name = format!("{}/{}/{host}", se.meta.namespace, se.meta.name);
            out.push(resource(name, Kind::Service(service(index, se, host, endpoints.clone()))));
        }
    }
    out
}

fn service(index: &Index<'_>, se: &ServiceEntry, host: &str, endpoints: Vec<api::Endpoint>) -> api::Service {
    api::Service {
        name: se.meta.name.clone(),
        namespace: se.meta.namespace.clone(),
        hostname: host.to_string(),
        vips: se
            .addresses
            .iter()
            .filter(|block| block.prefix_len == if block.addr.is_ipv4() { 32 } else { 128 })
            .map(|block| ip_bytes(block.addr))
            .collect(),
        ports: se
            .ports
            .iter()
            .map(|p| api::ServicePort {
                port: p.number.into(),
                target_port: target_port(p).into(),
                name: p.name.clone(),
                app_protocol: p.protocol.as_deref().map(str::to_ascii_lowercase).unwrap_or_default(),
            })
            .collect(),
        endpoints,
        waypoint: waypoint::binding(index, &se.meta, Traffic::Service),
    }
}

fn target_port(port: &SePort) -> u16 {
    port.target_port.unwrap_or(port.number)
}

fn endpoints(index: &Index<'_>, se: &ServiceEntry) -> Vec<api::Endpoint> {
    let default_ports =
        || -> BTreeMap<u32, u32> { se.ports.iter().map(|p| (p.number.into(), target_port(p).into())).collect() };
    if let Some(selector) = &se.workload_selector {
        return index
            .pods_in(&se.meta.namespace)
            .filter(|p| selector.matches(&p.pod.meta.labels))
            .map(|p| api::Endpoint {
                workload_uid: p.uid.clone(),
                address: index::addresses(p.pod).first().copied().map(ip_bytes).unwrap_or_default(),
                ports: default_ports(),
                ready: p.pod.phase == PodPhase::Running,
            })
            .collect();
    }
    se.endpoints
        .iter()
        .filter_map(|entry| {
            let address: IpAddr = entry.address.parse().ok()?;
            let ports = se
                .ports
                .iter()
                .map(|p| (p.number.into(), entry.ports.get(&p.name).copied().unwrap_or(target_port(p)).into()))
                .collect();
            Some(api::Endpoint { workload_uid: String::new(), address: ip_bytes(address), ports, ready: true })
        })
        .collect()
}
