//! Builders for tests of what reads the mesh: resources written as compactly as the
//! configuration they stand for. Every workload is in namespace `ns` with service account
//! `sa-<uid>`, so its identity is `cluster.local/ns/ns/sa/sa-<uid>`.

use ambit_common::{
    api::v1::{Authorization, Endpoint, Resource, Service, ServicePort, Update, Waypoint, Workload, resource::Kind},
    discovery::ResourceSet,
};

use super::Mesh;

pub(crate) fn ip(s: &str) -> Vec<u8> {
    s.parse::<std::net::Ipv4Addr>().expect("test address").octets().to_vec()
}

/// A workload `uid` (also its name) at `addr`.
pub(crate) fn workload(uid: &str, addr: &str, captured: bool) -> Workload {
    Workload {
        uid: uid.into(),
        name: uid.into(),
        addresses: vec![ip(addr)],
        captured,
        namespace: "ns".into(),
        service_account: format!("sa-{uid}"),
        node: "n".into(),
        ..Default::default()
    }
}

/// A ready endpoint: workload `uid`, service port 80 → `port`.
pub(crate) fn endpoint(uid: &str, port: u32) -> Endpoint {
    Endpoint { workload_uid: uid.into(), ports: [(80, port)].into(), ready: true, ..Default::default() }
}

/// Service `ns/<name>` at `vip`, port 80 → target port 8080.
pub(crate) fn service(name: &str, vip: &str, endpoints: Vec<Endpoint>) -> Service {
    Service {
        name: name.into(),
        namespace: "ns".into(),
        vips: vec![ip(vip)],
        ports: vec![ServicePort { port: 80, target_port: 8080, ..Default::default() }],
        endpoints,
        ..Default::default()
    }
}

/// Waypoint `ns/<name>` with instances `uids`.
pub(crate) fn waypoint(name: &str, uids: &[&str]) -> Waypoint {
    Waypoint { namespace: "ns".into(), name: name.into(), workload_uids: uids.iter().map(|u| (*u).into()).collect() }
}

/// Resources, named as the control plane names them.
pub(crate) enum Res {
    Workload(Workload),
    Service(Service),
    Waypoint(Waypoint),
    Authorization(Authorization),
}

impl From<Res> for Resource {
    fn from(r: Res) -> Self {
        let (name, kind) = match r {
            Res::Workload(w) => (w.uid.clone(), Kind::Workload(w)),
            Res::Service(s) => (format!("{}/{}", s.namespace, s.name), Kind::Service(s)),
            Res::Waypoint(w) => (format!("{}/{}", w.namespace, w.name), Kind::Waypoint(w)),
            Res::Authorization(a) => (format!("{}/{}", a.namespace, a.name), Kind::Authorization(a)),
        };
        Resource { name, kind: Some(kind) }
    }
}

/// The mesh of a full configuration made of `resources`.
pub(crate) fn mesh(resources: Vec<Res>) -> Mesh {
    let upserts = resources.into_iter().map(Resource::from).collect();
    let set = ResourceSet::default().apply(Update { version: 1, full: true, upserts, ..Default::default() });
    Mesh::from_resources(&set.expect("a valid test configuration"), None)
}
