//! The mesh as the data path sees it: workloads by address, services by VIP and port,
//! waypoints with their instances, authorization policies and the waypoint bindings of every
//! workload port, indexed once per configuration update (off the data path) and read lock-free
//! by every connection through an `Arc` snapshot.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ambit_common::{
    api::{
        serde_bytes::to_ip,
        v1::{self as api, ResourceType, Service, Workload, resource::Kind},
    },
    discovery::ResourceSet,
};

use crate::policy::{ConnectionAttrs, Decision, Policies, WaypointBindings, authorizations};

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

/// A workload and where it can be reached.
#[derive(Debug)]
pub(crate) struct MeshWorkload {
    pub(crate) uid: String,
    pub(crate) workload: Workload,
}

/// A waypoint and its instances that can be reached: known workloads with an address.
#[derive(Debug)]
pub(crate) struct MeshWaypoint {
    /// `<namespace>/<name>`.
    pub(crate) name: String,
    pub(crate) instances: Vec<WaypointInstance>,
}

#[derive(Debug)]
pub(crate) struct WaypointInstance {
    pub(crate) workload: Arc<MeshWorkload>,
    /// Its primary address.
    pub(crate) ip: IpAddr,
}

#[derive(Debug, Default)]
pub(crate) struct Mesh {
    pub(crate) version: u64,
    by_ip: HashMap<IpAddr, Arc<MeshWorkload>>,
    by_uid: HashMap<String, Arc<MeshWorkload>>,
    services: HashMap<SocketAddr, Arc<Service>>,
    waypoints: HashMap<String, Arc<MeshWaypoint>>,
    pub(crate) policies: Policies,
    waypoint_bindings: WaypointBindings,
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
        // Waypoints name workloads: resolved once every workload is indexed.
        for resource in resources.of_type(ResourceType::Waypoint) {
            if let Some(Kind::Waypoint(w)) = &resource.kind {
                let waypoint = mesh.waypoint_instances(&resource.name, w);
                mesh.waypoints.insert(resource.name.clone(), Arc::new(waypoint));
            }
        }
        mesh.waypoint_bindings = mesh.bindings(resources);
        debug_assert!(resources.of_type(ResourceType::Workload).count() == mesh.by_uid.len());
        mesh
    }

    fn waypoint_instances(&self, name: &str, waypoint: &api::Waypoint) -> MeshWaypoint {
        let instance = |uid: &String| {
            let workload = self.by_uid.get(uid)?;
            let ip = workload.workload.addresses.iter().find_map(|a| to_ip(a))?;
            Some(WaypointInstance { workload: workload.clone(), ip })
        };
        MeshWaypoint { name: name.to_owned(), instances: waypoint.workload_uids.iter().filter_map(instance).collect() }
    }

    /// Which workload ports are bound to which waypoints, and the waypoints' identities.
    fn bindings(&self, resources: &ResourceSet) -> WaypointBindings {
        let mut bindings = WaypointBindings::default();
        for (uid, w) in self.by_uid.iter().filter(|(_, w)| !w.workload.waypoint.is_empty()) {
            bindings.bind_workload(uid, &w.workload.waypoint);
        }
        for resource in resources.of_type(ResourceType::Service) {
            let Some(Kind::Service(service)) = &resource.kind else { continue };
            if service.waypoint.is_empty() {
                continue;
            }
            // Every endpoint, ready or not: readiness must not open a way around the waypoint.
            for endpoint in service.endpoints.iter().filter(|e| !e.workload_uid.is_empty()) {
                for port in &service.ports {
                    let Ok(service_port) = u16::try_from(port.port) else { continue };
                    if let Some(target) = target_port(service, endpoint, service_port) {
                        bindings.bind_port(&endpoint.workload_uid, target, &service.waypoint);
                    }
                }
            }
        }
        for waypoint in self.waypoints.values() {
            for instance in &waypoint.instances {
                let w = &instance.workload.workload;
                bindings.add_instance(&waypoint.name, &w.namespace, &w.service_account);
            }
        }
        bindings
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

    /// The waypoint `name` (`<namespace>/<name>`), if the configuration describes it.
    pub(crate) fn waypoint(&self, name: &str) -> Option<&Arc<MeshWaypoint>> {
        self.waypoints.get(name)
    }

    /// The ready endpoints of `service` for connections to service port `port`, with their
    /// workloads (an address-only endpoint has none).
    pub(crate) fn endpoints(&self, service: &Service, port: u16) -> Vec<Endpoint> {
        service
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .filter_map(|e| {
                let workload =
                    (!e.workload_uid.is_empty()).then(|| self.by_uid.get(&e.workload_uid).cloned()).flatten();
                let ip = to_ip(&e.address)
                    .or_else(|| workload.as_ref()?.workload.addresses.first().and_then(|a| to_ip(a)))?;
                Some(Endpoint { addr: SocketAddr::new(ip, target_port(service, e, port)?), workload })
            })
            .collect()
    }

    /// The inbound decision for a connection to local workload `workload`: a waypoint-bound port
    /// accepts only its waypoint, then AuthorizationPolicy decides. `trust_domain` is the
    /// mesh's, which the waypoint's identity must be in.
    pub(crate) fn authorize(&self, workload: &MeshWorkload, attrs: &ConnectionAttrs, trust_domain: &str) -> Decision {
        if let Err(bypassed) = self.waypoint_bindings.check(&workload.uid, &workload.workload, attrs, trust_domain) {
            return Decision::Deny { by: bypassed.into() };
        }
        self.policies.authorize(&workload.workload, attrs)
    }

    /// The waypoints traffic to `port` of workload `uid` must come through (see
    /// [`WaypointBindings::bound`]).
    #[cfg(test)]
    pub(crate) fn bound_waypoints(&self, uid: &str, port: u16) -> Vec<&str> {
        self.waypoint_bindings.bound(uid, port)
    }
}

/// The port on `endpoint` that service port `port` maps to: the endpoint's own mapping, else
/// the service's numeric target port, else the port itself; `None` when out of range.
fn target_port(service: &Service, endpoint: &api::Endpoint, port: u16) -> Option<u16> {
    let declared = service.ports.iter().find(|p| p.port == u32::from(port));
    let target = endpoint
        .ports
        .get(&u32::from(port))
        .copied()
        .or_else(|| declared.map(|p| p.target_port).filter(|t| *t != 0))
        .unwrap_or(u32::from(port));
    u16::try_from(target).ok()
}

/// IPv4-mapped IPv6 addresses are the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
