//! The mesh as the data path sees it: workloads by address, services by VIP and port, and
//! authorization policies, indexed once per configuration update (off the data path) and read
//! lock-free by every connection through an `Arc` snapshot.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ambit_common::{
    api::{
        serde_bytes::to_ip,
        v1::{ResourceType, Service, Workload, resource::Kind},
    },
    discovery::ResourceSet,
};

use crate::policy::{Policies, authorizations};

/// A workload and where it can be reached.
#[derive(Debug)]
pub(crate) struct MeshWorkload {
    pub(crate) uid: String,
    pub(crate) workload: Workload,
}

#[derive(Debug, Default)]
pub(crate) struct Mesh {
    pub(crate) version: u64,
    by_ip: HashMap<IpAddr, Arc<MeshWorkload>>,
    by_uid: HashMap<String, Arc<MeshWorkload>>,
    services: HashMap<SocketAddr, Arc<Service>>,
    pub(crate) policies: Policies,
}

/// Where a service connection goes: one endpoint.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    pub(crate) workload: Option<Arc<MeshWorkload>>,
}

impl Mesh {
    /// The index of `resources`; `previous` lets policy warnings be logged once, not per update.
    pub(crate) fn from_resources(resources: &ResourceSet, previous: Option<&Mesh>) -> Self {
        let policies = match previous {
            Some(previous) => previous.policies.update(authorizations(resources)),
            None => Policies::default().update(authorizations(resources)),
        };
        let mut mesh = Self { version: resources.version(), policies, ..Self::default() };
        for resource in resources.iter() {
            match &resource.kind {
                Some(Kind::Workload(w)) => {
                    let entry = Arc::new(MeshWorkload { uid: resource.name.clone(), workload: w.clone() });
                    for ip in w.addresses.iter().filter_map(|a| to_ip(a)) {
                        mesh.by_ip.insert(ip, entry.clone());
                    }
                    mesh.by_uid.insert(resource.name.clone(), entry);
                }
                Some(Kind::Service(s)) => {
                    let service = Arc::new(s.clone());
                    for vip in s.vips.iter().filter_map(|a| to_ip(a)) {
                        for port in &s.ports {
                            mesh.services.insert(SocketAddr::new(vip, port.port as u16), service.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        debug_assert!(resources.of_type(ResourceType::Workload).count() == mesh.by_uid.len());
        mesh
    }

    pub(crate) fn workload_by_ip(&self, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        self.by_ip.get(&canonical(ip))
    }

    pub(crate) fn workload_by_uid(&self, uid: &str) -> Option<&Arc<MeshWorkload>> {
        self.by_uid.get(uid)
    }

    pub(crate) fn service(&self, vip: SocketAddr) -> Option<&Arc<Service>> {
        self.services.get(&SocketAddr::new(canonical(vip.ip()), vip.port()))
    }

    /// The ready endpoints of `service` for connections to service port `port`, with their
    /// workloads (an address-only endpoint has none).
    pub(crate) fn endpoints(&self, service: &Service, port: u16) -> Vec<Endpoint> {
        let declared = service.ports.iter().find(|p| p.port == u32::from(port));
        service
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .filter_map(|e| {
                let workload =
                    (!e.workload_uid.is_empty()).then(|| self.by_uid.get(&e.workload_uid).cloned()).flatten();
                let ip = to_ip(&e.address)
                    .or_else(|| workload.as_ref()?.workload.addresses.first().and_then(|a| to_ip(a)))?;
                let target = e
                    .ports
                    .get(&u32::from(port))
                    .copied()
                    .or_else(|| declared.map(|p| p.target_port).filter(|t| *t != 0))
                    .unwrap_or(u32::from(port));
                Some(Endpoint { addr: SocketAddr::new(ip, u16::try_from(target).ok()?), workload })
            })
            .collect()
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
