//! Node proxy resources: namespaces, workloads, services, waypoints, L4 authorization.
//!
//! One module per resource, each a pure function of the [`Index`] built once per snapshot:
//!
//! - [`workload`]: a `Workload` per pod that has an IP, is not `hostNetwork` (such pods share
//!   the node's network namespace and are never captured) and has not finished (`Succeeded` or
//!   `Failed` pods keep an IP that Kubernetes may already have handed to a new pod; Istio skips
//!   them too). Capture, waypoint, canonical names, applicable policies and effective mTLS
//!   are all resolved here, so a node proxy never evaluates labels or selectors.
//! - [`service`]: a `Service` per Kubernetes Service, endpoints from its EndpointSlices;
//!   [`service_entry`]: a `Service` per ServiceEntry host.
//! - [`waypoint`]: `istio.io/use-waypoint` bindings, and a `Waypoint` per waypoint Gateway with
//!   its instances (the pods node proxies tunnel to);
//! - [`authorization`]: the L4 form of every AuthorizationPolicy a node proxy enforces;
//!   [`waypoint_allow`]: the implicit "allow from the waypoint" policies;
//!   [`mtls`]: PeerAuthentication precedence.
//!
//! The rules are Istio ambient's, as istiod computes them for ztunnel
//! (`pilot/pkg/serviceregistry/kube/controller/ambient/`); each module says where it had to
//! choose. Output is deterministic: `shared` is namespaces, then workloads, then services,
//! then waypoints (the order of `ResourceType`), each sorted by resource name.

pub(super) mod authorization;
mod index;
mod mtls;
mod service;
mod service_entry;
mod waypoint;
mod waypoint_allow;
mod workload;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, net::IpAddr};

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::Snapshot,
};

use self::{index::Index, waypoint::Waypoints, waypoint_allow::ImplicitAllow};
use super::MeshConfig;

pub(super) struct NodeResources {
    pub(super) shared: Vec<Resource>,
    pub(super) authorizations: BTreeMap<String, Resource>,
}

pub(super) fn compile(snapshot: &Snapshot, mesh: &MeshConfig) -> NodeResources {
    let index = Index::new(snapshot, mesh);
    let waypoints = Waypoints::new(&index);
    let mut services = service::compile(&index);
    services.extend(service_entry::compile(&index));
    // Workloads reference the implicit waypoint policies, which follow the services' endpoints.
    let implicit = ImplicitAllow::new(mesh, &waypoints, &services);
    let mut shared = namespaces(snapshot);
    shared.extend(sorted(workload::compile(&index, &implicit)));
    shared.extend(sorted(services));
    shared.extend(waypoints.compile());
    let mut authorizations = authorization::compile(snapshot);
    authorizations.extend(implicit.into_resources());
    NodeResources { shared, authorizations }
}

fn namespaces(snapshot: &Snapshot) -> Vec<Resource> {
    let namespaces = snapshot.namespaces().map(|ns| {
        let labels = ns.meta.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        resource(ns.meta.name.clone(), Kind::Namespace(api::Namespace { name: ns.meta.name.clone(), labels }))
    });
    sorted(namespaces.collect())
}

fn resource(name: String, kind: Kind) -> Resource {
    Resource { name, kind: Some(kind) }
}

fn sorted(mut resources: Vec<Resource>) -> Vec<Resource> {
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    resources
}

/// An address as the API carries it: 4 bytes for IPv4, 16 for IPv6.
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}
