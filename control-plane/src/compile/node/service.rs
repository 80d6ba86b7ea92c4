//! Kubernetes Services → `Service` resources (resource name `<namespace>/<name>`).
//!
//! - VIPs: `clusterIPs`; a headless service (`clusterIP: None`) has none.
//! - Endpoints: one per address of every endpoint in the EndpointSlices labelled
//!   `kubernetes.io/service-name=<name>` in the service's namespace. The workload behind it is
//!   the pod its `targetRef` names (by uid, else by namespace/name), else the workload pod with
//!   that address; otherwise the endpoint is address-only (e.g. a hand-managed slice, or a
//!   `hostNetwork` pod, which is never a workload). `address` is always set.
//! - Port mapping, per service port: the slice port carrying the service port's name (the
//!   EndpointSlice controller writes the resolved target port there); else a numeric target
//!   port as is; else a named target port via the slice port of that name, then the pod's
//!   container port of that name. A service port that resolves nowhere is left out of the map.

use std::net::IpAddr;

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::{
        hosts,
        model::{Endpoint, EndpointSlice, Pod, Protocol, Service, ServicePort, TargetPort},
    },
};

use super::{
    index::{Index, MeshPod},
    ip_bytes, resource,
    waypoint::{self, Traffic},
};

pub(super) fn compile(index: &Index<'_>) -> Vec<Resource> {
    index
        .snapshot
        .services()
        .map(|svc| {
            let name = format!("{}/{}", svc.meta.namespace, svc.meta.name);
            resource(name, Kind::Service(service(index, svc)))
        })
        .collect()
}

fn service(index: &Index<'_>, svc: &Service) -> api::Service {
    let (name, namespace) = (&svc.meta.name, &svc.meta.namespace);
    api::Service {
        name: name.clone(),
        namespace: namespace.clone(),
        hostname: hosts::service_hostname(name, namespace, &index.mesh.cluster_domain),
        vips: if svc.headless { Vec::new() } else { svc.cluster_ips.iter().copied().map(ip_bytes).collect() },
        ports: svc.ports.iter().map(service_port).collect(),
        endpoints: endpoints(index, svc),
        waypoint: waypoint::binding(index, &svc.meta, Traffic::Service),
    }
}

fn service_port(port: &ServicePort) -> api::ServicePort {
    api::ServicePort {
        port: port.port.into(),
        target_port: match &port.target_port {
            TargetPort::Number(n) => (*n).into(),
            TargetPort::Name(_) => 0,
        },
        name: port.name.clone().unwrap_or_default(),
        app_protocol: app_protocol(port.protocol, port.app_protocol.as_deref(), port.name.as_deref()),
    }
}

/// Istio's protocol selection for a Kubernetes port (`kube.ConvertProtocol`; docs:
/// <https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/>):
/// `appProtocol`, else the port name's prefix before `-` (`http-web` → `http`), matched
/// case-insensitively against Istio's protocol names. Empty when neither says: the proxy
/// treats the port as opaque TCP (Istio would sniff).
pub(super) fn app_protocol(protocol: Protocol, app_protocol: Option<&str>, port_name: Option<&str>) -> String {
    if protocol == Protocol::Udp {
        return "udp".into();
    }
    let declared = match app_protocol {
        // The standard names Kubernetes defines for appProtocol.
        Some("kubernetes.io/h2c") => return "http2".into(),
        Some("kubernetes.io/ws") => return "http".into(),
        Some("kubernetes.io/wss") => return "https".into(),
        Some(p) => p,
        None => port_name.unwrap_or_default(),
    };
    let declared = declared.to_ascii_lowercase();
    if declared.starts_with("grpc-web") {
        return "grpc-web".into();
    }
    let prefix = declared.split('-').next().unwrap_or_default();
    const KNOWN: [&str; 11] =
        ["http", "http2", "https", "http_proxy", "grpc", "tcp", "tls", "udp", "mongo", "redis", "mysql"];
    if KNOWN.contains(&prefix) { prefix.to_string() } else { String::new() }
}

fn endpoints(index: &Index<'_>, svc: &Service) -> Vec<api::Endpoint> {
    let mut out = Vec::new();
    for slice in index.endpoint_slices(&svc.meta.namespace, &svc.meta.name) {
        for ep in &slice.endpoints {
            for &address in &ep.addresses {
                let pod = endpoint_pod(index, &slice.meta.namespace, ep, address);
                out.push(api::Endpoint {
                    workload_uid: pod.map(|p| p.uid.clone()).unwrap_or_default(),
                    address: ip_bytes(address),
                    ports: svc
                        .ports
                        .iter()
                        .filter_map(|sp| Some((sp.port.into(), endpoint_port(sp, slice, pod.map(|p| p.pod))?.into())))
                        .collect(),
                    ready: ep.ready,
                });
            }
        }
    }
    out
}

fn endpoint_pod<'i>(index: &'i Index<'_>, namespace: &str, ep: &Endpoint, address: IpAddr) -> Option<&'i MeshPod<'i>> {
    let by_ref = ep.target.as_ref().filter(|t| t.kind == "Pod").and_then(|t| match &t.uid {
        Some(uid) => index.pod_by_uid(uid),
        None => index.pod_by_name(t.namespace.as_deref().unwrap_or(namespace), &t.name),
    });
    by_ref.or_else(|| index.pod_by_ip(address))
}

fn non_empty(name: Option<&str>) -> Option<&str> {
    name.filter(|n| !n.is_empty())
}

fn endpoint_port(port: &ServicePort, slice: &EndpointSlice, pod: Option<&Pod>) -> Option<u16> {
    let slice_port =
        |name: Option<&str>| slice.ports.iter().find(|p| non_empty(p.name.as_deref()) == non_empty(name))?.port;
    if let Some(resolved) = slice_port(port.name.as_deref()) {
        return Some(resolved);
    }
    match &port.target_port {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => slice_port(Some(name)).or_else(|| pod.and_then(|p| container_port(p, name))),
    }
}

fn container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.containers.iter().flat_map(|c| &c.ports).find(|p| p.name.as_deref() == Some(name)).map(|p| p.port)
}
