//! ServiceEntry → model.

use std::collections::{BTreeMap, BTreeSet};

use super::{dns_label, export_to, ip_blocks, istio_meta, labels, port, selector, wildcard_host};
use crate::config::{
    error::{ConfigError, FieldResult, Path},
    kind::Kind,
    model::{Location, ObjectMeta, Resolution, SePort, ServiceEntry, WorkloadEntry},
    raw::{IstioObject, service_entry as rs},
};

/// Istio's protocol names (`protocol.Parse`, case-insensitive).
const PROTOCOLS: [&str; 12] =
    ["HTTP", "HTTPS", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "TCP", "TLS", "UDP", "MONGO", "REDIS", "MYSQL"];

impl TryFrom<IstioObject<rs::ServiceEntrySpec>> for ServiceEntry {
    type Error = ConfigError;
    fn try_from(raw: IstioObject<rs::ServiceEntrySpec>) -> Result<Self, ConfigError> {
        let info = istio_meta(Kind::ServiceEntry, raw.metadata)?;
        service_entry(info.meta, &raw.spec).map_err(|e| e.for_object(&info.object))
    }
}

fn service_entry(meta: ObjectMeta, spec: &rs::ServiceEntrySpec) -> FieldResult<ServiceEntry> {
    let at = Path::root("spec");
    if spec.hosts.is_empty() {
        return Err(at.key("hosts").err("a ServiceEntry must list at least one host"));
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        if h == "*" {
            return Err(at.key("hosts").index(i).err("host \"*\" is not allowed in a ServiceEntry"));
        }
        wildcard_host(h).map_err(|e| at.key("hosts").index(i).err(e))?;
    }
    let addresses = ip_blocks(&spec.addresses, &at.key("addresses"))?;
    let resolution = resolution(spec.resolution.as_deref(), &at.key("resolution"))?;
    let location = match spec.location.as_deref().unwrap_or("MESH_EXTERNAL") {
        "MESH_EXTERNAL" => Location::MeshExternal,
        "MESH_INTERNAL" => Location::MeshInternal,
        other => return Err(at.key("location").err(format!("{other:?} is not one of MESH_EXTERNAL, MESH_INTERNAL"))),
    };
    if spec.addresses.iter().any(|a| a.contains('/')) && !matches!(resolution, Resolution::None | Resolution::Static) {
        return Err(at.key("addresses").err("CIDR addresses are allowed only with resolution NONE or STATIC"));
    }
    let ports = ports(&spec.ports, &at.key("ports"))?;
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        return Err(at.err("workloadSelector and endpoints are mutually exclusive; set one"));
    }
    let endpoints = endpoints(spec, resolution, &ports, &at.key("endpoints"))?;
    let workload_selector = match &spec.workload_selector {
        Some(ws) => selector(&ws.labels, &at.key("workloadSelector").key("labels"))?,
        None => None,
    };
    Ok(ServiceEntry {
        export_to: export_to(&spec.export_to, &meta.namespace, true, &at.key("exportTo"))?,
        meta,
        hosts: spec.hosts.clone(),
        addresses,
        ports,
        location,
        resolution,
        endpoints,
        workload_selector,
        subject_alt_names: spec.subject_alt_names.clone(),
    })
}

fn resolution(raw: Option<&str>, at: &Path) -> FieldResult<Resolution> {
    match raw.unwrap_or("NONE") {
        "NONE" => Ok(Resolution::None),
        "STATIC" => Ok(Resolution::Static),
        "DNS" => Ok(Resolution::Dns),
        "DNS_ROUND_ROBIN" => Ok(Resolution::DnsRoundRobin),
        other => Err(at.err(format!("{other:?} is not one of NONE, STATIC, DNS, DNS_ROUND_ROBIN"))),
    }
}

fn ports(raw: &[rs::ServicePort], at: &Path) -> FieldResult<Vec<SePort>> {
    let (mut names, mut numbers) = (BTreeSet::new(), BTreeSet::new());
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = at.index(i);
        let number = port(p.number, &at.key("number"))?;
        dns_label(&p.name, &at.key("name"), "port name")?;
        if !names.insert(p.name.clone()) {
            return Err(at.key("name").err(format!("port name {:?} is already defined", p.name)));
        }
        if !numbers.insert(number) {
            return Err(at.key("number").err(format!("port {number} is already defined")));
        }
        let protocol = match p.protocol.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let upper = s.to_ascii_uppercase();
                if !PROTOCOLS.contains(&upper.as_str()) {
                    return Err(at
                        .key("protocol")
                        .err(format!("unsupported protocol {s:?}; use one of {}", PROTOCOLS.join(", "))));
                }
                Some(upper)
            }
        };
        let target_port = p.target_port.map(|t| port(t, &at.key("targetPort"))).transpose()?;
        out.push(SePort { number, protocol, name: p.name.clone(), target_port });
    }
    Ok(out)
}

fn endpoints(
    spec: &rs::ServiceEntrySpec,
    resolution: Resolution,
    ports: &[SePort],
    at: &Path,
) -> FieldResult<Vec<WorkloadEntry>> {
    match resolution {
        Resolution::None if !spec.endpoints.is_empty() => {
            return Err(at.err("endpoints are not allowed with resolution NONE; use STATIC or DNS"));
        }
        Resolution::DnsRoundRobin if spec.endpoints.len() > 1 => {
            return Err(at.err("resolution DNS_ROUND_ROBIN allows at most one endpoint"));
        }
        Resolution::Dns | Resolution::DnsRoundRobin if spec.endpoints.is_empty() => {
            if let Some(h) = spec.hosts.iter().find(|h| h.starts_with('*')) {
                return Err(Path::root("spec.hosts").err(format!(
                    "host {h:?} must be a fully qualified name when resolution is DNS without endpoints"
                )));
            }
        }
        _ => {}
    }
    let mut out = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let at = at.index(i);
        let is_ip = e.address.parse::<std::net::IpAddr>().is_ok();
        if resolution == Resolution::Static && !is_ip && !e.address.starts_with("unix://") {
            return Err(at
                .key("address")
                .err(format!("endpoint address {:?} must be an IP address with resolution STATIC", e.address)));
        }
        if !is_ip && !e.address.starts_with("unix://") {
            wildcard_host(&e.address).map_err(|err| at.key("address").err(err))?;
        }
        let mut endpoint_ports = BTreeMap::new();
        for (name, number) in &e.ports {
            if !ports.iter().any(|p| &p.name == name) {
                return Err(at
                    .key("ports")
                    .entry(name)
                    .err(format!("endpoint port {name:?} is not a port of this ServiceEntry")));
            }
            endpoint_ports.insert(name.clone(), port(*number, &at.key("ports").entry(name))?);
        }
        let weight = e
            .weight
            .map(|w| u32::try_from(w).map_err(|_| at.key("weight").err(format!("weight {w} must not be negative"))))
            .transpose()?;
        out.push(WorkloadEntry {
            address: e.address.clone(),
            ports: endpoint_ports,
            labels: labels(&e.labels, &at.key("labels"))?,
            network: e.network.clone(),
            locality: e.locality.clone(),
            weight,
            service_account: e.service_account.clone(),
        });
    }
    Ok(out)
}
