//! Where a captured outbound connection goes — decided from the mesh configuration alone, with
//! no IO, so every rule here is unit-tested. Carrying it out is `outbound.rs`'s job.
//!
//! In order:
//! 1. a service VIP whose service is bound to a waypoint goes to the waypoint, CONNECT authority
//!    the VIP and port (the waypoint routes the service);
//! 2. another service VIP becomes one of its ready endpoints;
//! 3. a workload (addressed directly, or the chosen endpoint) bound to a waypoint goes to that
//!    waypoint, authority its own address and port: its node proxy would refuse anything else;
//! 4. a captured workload is reached over HBONE; anything else passes through as plain TCP.
//!
//! A waypoint is reached over HBONE to one of its instances on port 15008. One bound to a
//! waypoint that has no instance (or that the configuration lacks) is refused: going around the
//! waypoint would skip its policy. The waypoint's own pods are never captured, but should one
//! be, its traffic is not sent back to itself.

#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, sync::Arc};

use ambit_ebpf_types::HBONE_PORT;

use crate::mesh::{Mesh, MeshWorkload, canonical};

#[derive(Debug)]
pub(crate) enum Plan {
    /// Tunnel over HBONE (mTLS) to a workload in the mesh, at `target` (its IP and port).
    Hbone { target: SocketAddr, workload: Arc<MeshWorkload> },
    /// Tunnel over HBONE to `instance` of `waypoint` (`<namespace>/<name>`), dialled at `target`
    /// (its IP, port 15008), asking it for `authority` (the original service VIP and port, or
    /// the bound workload's address and port).
    Waypoint { waypoint: String, instance: Arc<MeshWorkload>, target: SocketAddr, authority: SocketAddr },
    /// Plain TCP: the destination is not in the mesh.
    Passthrough { target: SocketAddr, reason: PassthroughReason },
    /// A service VIP with no ready endpoint: the connection is refused.
    NoEndpoints { service: String },
    /// The destination is bound to a waypoint that cannot be reached: the connection is refused.
    NoWaypoint(NoWaypoint),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassthroughReason {
    /// The destination is no workload or service the control plane knows.
    OutsideMesh,
    /// The destination workload's traffic is not captured (not enrolled).
    NotEnrolled,
    /// The service endpoint has an address but no workload (e.g. a ServiceEntry endpoint).
    AddressEndpoint,
}

impl PassthroughReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OutsideMesh => "outside_mesh",
            Self::NotEnrolled => "destination_not_enrolled",
            Self::AddressEndpoint => "address_endpoint",
        }
    }
}

/// What is bound to a waypoint: a service, or a workload addressed directly (`<ns>/<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BoundTo {
    Service(String),
    Workload(String),
}

impl fmt::Display for BoundTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(name) => write!(f, "service {name}"),
            Self::Workload(name) => write!(f, "workload {name}"),
        }
    }
}

/// Why traffic bound to a waypoint cannot go to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoWaypoint {
    #[error("{bound} is bound to waypoint {waypoint}, which has no ready instance ({})", pods_hint(.waypoint))]
    NoInstance { bound: BoundTo, waypoint: String },
    #[error(
        "{bound} is bound to waypoint {waypoint}, which is not in the configuration received from the \
         control plane (is the control plane older than the node proxy?)"
    )]
    Unknown { bound: BoundTo, waypoint: String },
}

/// Where to look for the pods of waypoint `<namespace>/<name>`.
fn pods_hint(waypoint: &str) -> String {
    match waypoint.split_once('/') {
        Some((namespace, name)) => {
            format!("no running pod in namespace {namespace} labelled gateway.networking.k8s.io/gateway-name={name}")
        }
        None => "no running pod of it".to_owned(),
    }
}

/// Decides where a connection from workload `source` (uid) to `destination` goes; `pick(n)`
/// chooses one of `n` endpoints or waypoint instances.
pub(crate) fn plan(mesh: &Mesh, source: &str, destination: SocketAddr, mut pick: impl FnMut(usize) -> usize) -> Plan {
    // The authority a waypoint receives names the address as the configuration does.
    let destination = SocketAddr::new(canonical(destination.ip()), destination.port());
    if let Some(service) = mesh.service(destination) {
        let name = format!("{}/{}", service.namespace, service.name);
        if !service.waypoint.is_empty()
            && let Some(plan) =
                via_waypoint(mesh, source, &service.waypoint, BoundTo::Service(name.clone()), destination, &mut pick)
        {
            return plan;
        }
        let endpoints = mesh.endpoints(service, destination.port());
        if endpoints.is_empty() {
            return Plan::NoEndpoints { service: name };
        }
        let endpoint = &endpoints[pick(endpoints.len()) % endpoints.len()];
        return match &endpoint.workload {
            Some(workload) => to_workload(mesh, source, workload, endpoint.addr, &mut pick),
            None => Plan::Passthrough { target: endpoint.addr, reason: PassthroughReason::AddressEndpoint },
        };
    }
    match mesh.workload_by_ip(destination.ip()) {
        Some(workload) => to_workload(mesh, source, workload, destination, &mut pick),
        None => Plan::Passthrough { target: destination, reason: PassthroughReason::OutsideMesh },
    }
}

/// To `workload` at `target`: through its waypoint if it has one, else HBONE when captured.
fn to_workload(
    mesh: &Mesh,
    source: &str,
    workload: &Arc<MeshWorkload>,
    target: SocketAddr,
    pick: &mut impl FnMut(usize) -> usize,
) -> Plan {
    let w = &workload.workload;
    if !w.waypoint.is_empty() {
        let bound = BoundTo::Workload(format!("{}/{}", w.namespace, w.name));
        if let Some(plan) = via_waypoint(mesh, source, &w.waypoint, bound, target, pick) {
            return plan;
        }
    }
    if w.captured {
        Plan::Hbone { target, workload: workload.clone() }
    } else {
        Plan::Passthrough { target, reason: PassthroughReason::NotEnrolled }
    }
}

/// To one instance of `waypoint`, for `authority`; `None` when `source` is an instance of it
/// (its own traffic goes on as if there were no waypoint).
fn via_waypoint(
    mesh: &Mesh,
    source: &str,
    waypoint: &str,
    bound: BoundTo,
    authority: SocketAddr,
    pick: &mut impl FnMut(usize) -> usize,
) -> Option<Plan> {
    let Some(found) = mesh.waypoint(waypoint) else {
        return Some(Plan::NoWaypoint(NoWaypoint::Unknown { bound, waypoint: waypoint.to_owned() }));
    };
    let instances = &found.instances;
    if instances.iter().any(|i| i.workload.uid == source) {
        return None;
    }
    if instances.is_empty() {
        return Some(Plan::NoWaypoint(NoWaypoint::NoInstance { bound, waypoint: waypoint.to_owned() }));
    }
    let instance = &instances[pick(instances.len()) % instances.len()];
    Some(Plan::Waypoint {
        waypoint: waypoint.to_owned(),
        instance: instance.workload.clone(),
        target: SocketAddr::new(instance.ip, HBONE_PORT),
        authority,
    })
}
