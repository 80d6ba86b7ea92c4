//! Where a captured outbound connection goes — decided from the mesh configuration alone, with
//! no IO, so every rule here is unit-tested. Carrying it out is `outbound.rs`'s job.

use std::{net::SocketAddr, sync::Arc};

use crate::mesh::{Mesh, MeshWorkload};

#[derive(Debug)]
pub(crate) enum Plan {
    /// Tunnel over HBONE (mTLS) to a workload in the mesh, at `target` (its IP and port).
    Hbone { target: SocketAddr, workload: Arc<MeshWorkload> },
    /// Plain TCP: the destination is not in the mesh.
    Passthrough { target: SocketAddr, reason: PassthroughReason },
    /// A service VIP with no ready endpoint: the connection is refused.
    NoEndpoints { service: String },
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

/// Decides where a connection to `destination` goes; `pick(n)` chooses one of `n` endpoints.
pub(crate) fn plan(mesh: &Mesh, destination: SocketAddr, pick: impl FnOnce(usize) -> usize) -> Plan {
    if let Some(service) = mesh.service(destination) {
        let endpoints = mesh.endpoints(service, destination.port());
        if endpoints.is_empty() {
            return Plan::NoEndpoints { service: format!("{}/{}", service.namespace, service.name) };
        }
        let endpoint = &endpoints[pick(endpoints.len()) % endpoints.len()];
        return match &endpoint.workload {
            Some(workload) if workload.workload.captured => {
                Plan::Hbone { target: endpoint.addr, workload: workload.clone() }
            }
            Some(_) => Plan::Passthrough { target: endpoint.addr, reason: PassthroughReason::NotEnrolled },
            None => Plan::Passthrough { target: endpoint.addr, reason: PassthroughReason::AddressEndpoint },
        };
    }
    match mesh.workload_by_ip(destination.ip()) {
        Some(workload) if workload.workload.captured => Plan::Hbone { target: destination, workload: workload.clone() },
        Some(_) => Plan::Passthrough { target: destination, reason: PassthroughReason::NotEnrolled },
        None => Plan::Passthrough { target: destination, reason: PassthroughReason::OutsideMesh },
    }
}

#[cfg(test)]
mod tests {
    use ambit_common::{
        api::v1::{Endpoint, Resource, Service, ServicePort, Update, Workload, resource::Kind},
        discovery::ResourceSet,
    };

    use super::*;

    fn ip(s: &str) -> Vec<u8> {
        s.parse::<std::net::Ipv4Addr>().unwrap().octets().to_vec()
    }

    fn workload(uid: &str, addr: &str, captured: bool) -> Resource {
        let w = Workload {
            addresses: vec![ip(addr)],
            captured,
            namespace: "ns".into(),
            node: "n".into(),
            ..Default::default()
        };
        Resource { name: uid.into(), kind: Some(Kind::Workload(w)) }
    }

    fn mesh() -> Mesh {
        let endpoint = |uid: &str, port| Endpoint {
            workload_uid: uid.into(),
            ports: [(80, port)].into(),
            ready: true,
            ..Default::default()
        };
        let service = |name: &str, vip: &str, endpoints| Service {
            name: name.into(),
            namespace: "ns".into(),
            vips: vec![ip(vip)],
            ports: vec![ServicePort { port: 80, target_port: 8080, ..Default::default() }],
            endpoints,
            ..Default::default()
        };
        let address_only =
            Endpoint { address: ip("192.0.2.9"), ports: [(80, 443)].into(), ready: true, ..Default::default() };
        let upserts = vec![
            workload("in", "10.1.0.2", true),
            workload("out", "10.1.0.3", false),
            Resource {
                name: "ns/web".into(),
                kind: Some(Kind::Service(service("web", "10.96.0.1", vec![endpoint("in", 9090)]))),
            },
            Resource {
                name: "ns/legacy".into(),
                kind: Some(Kind::Service(service("legacy", "10.96.0.2", vec![endpoint("out", 8080)]))),
            },
            Resource { name: "ns/empty".into(), kind: Some(Kind::Service(service("empty", "10.96.0.3", vec![]))) },
            Resource {
                name: "ns/ext".into(),
                kind: Some(Kind::Service(service("ext", "10.96.0.4", vec![address_only]))),
            },
        ];
        let set =
            ResourceSet::default().apply(Update { version: 1, full: true, upserts, ..Default::default() }).unwrap();
        Mesh::from_resources(&set, None)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn captured_workloads_get_hbone_others_pass_through() {
        let mesh = mesh();
        assert!(
            matches!(plan(&mesh, addr("10.1.0.2:8080"), |_| 0), Plan::Hbone { target, .. } if target == addr("10.1.0.2:8080"))
        );
        assert!(
            matches!(plan(&mesh, addr("[::ffff:10.1.0.2]:8080"), |_| 0), Plan::Hbone { .. }),
            "IPv4-mapped destinations are the IPv4 workload"
        );
        assert!(matches!(
            plan(&mesh, addr("10.1.0.3:8080"), |_| 0),
            Plan::Passthrough { reason: PassthroughReason::NotEnrolled, .. }
        ));
        assert!(matches!(
            plan(&mesh, addr("8.8.8.8:53"), |_| 0),
            Plan::Passthrough { reason: PassthroughReason::OutsideMesh, .. }
        ));
    }

    #[test]
    fn service_vips_resolve_to_an_endpoint_and_its_target_port() {
        let mesh = mesh();
        match plan(&mesh, addr("10.96.0.1:80"), |_| 0) {
            Plan::Hbone { target, workload } => {
                assert_eq!(target, addr("10.1.0.2:9090"), "the endpoint's port mapping wins");
                assert_eq!(workload.uid, "in");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan(&mesh, addr("10.96.0.2:80"), |_| 0),
            Plan::Passthrough { reason: PassthroughReason::NotEnrolled, .. }
        ));
        assert!(
            matches!(plan(&mesh, addr("10.96.0.3:80"), |_| 0), Plan::NoEndpoints { ref service } if service == "ns/empty")
        );
        assert!(matches!(
            plan(&mesh, addr("10.96.0.4:80"), |_| 0),
            Plan::Passthrough { target, reason: PassthroughReason::AddressEndpoint } if target == addr("192.0.2.9:443")
        ));
        assert!(matches!(plan(&mesh, addr("10.96.0.1:81"), |_| 0), Plan::Passthrough { .. }), "undeclared port");
    }
}
