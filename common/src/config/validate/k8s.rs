//! Kubernetes objects → model. These come from the API server, which has validated them
//! already; the checks here catch hand-written local files and turn strings into types.

use std::net::IpAddr;

use super::{ObjectInfo, k8s_meta, labels, port};
use crate::config::{
    error::{ConfigError, FieldResult, Path},
    kind::Kind,
    model::{
        AddressType, Container, ContainerPort, Endpoint, EndpointPort, EndpointSlice, EndpointTarget, Gateway,
        Listener, Namespace, Pod, PodPhase, Protocol, Service, ServiceAccount, ServicePort, ServiceType, TargetPort,
    },
    raw::{IntOrString, k8s as raw},
};

fn finish<T>(info: &ObjectInfo, result: FieldResult<T>) -> Result<T, ConfigError> {
    result.map_err(|e| e.for_object(&info.object))
}

impl TryFrom<raw::Namespace> for Namespace {
    type Error = ConfigError;
    fn try_from(raw: raw::Namespace) -> Result<Self, ConfigError> {
        Ok(Namespace { meta: k8s_meta(Kind::Namespace, raw.metadata)?.meta })
    }
}

impl TryFrom<raw::ServiceAccount> for ServiceAccount {
    type Error = ConfigError;
    fn try_from(raw: raw::ServiceAccount) -> Result<Self, ConfigError> {
        Ok(ServiceAccount { meta: k8s_meta(Kind::ServiceAccount, raw.metadata)?.meta })
    }
}

fn protocol(raw: Option<&str>, at: &Path) -> FieldResult<Protocol> {
    match raw.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(at.err(format!("protocol {other:?} is not one of TCP, UDP, SCTP"))),
    }
}

fn ip(raw: &str, at: &Path) -> FieldResult<IpAddr> {
    raw.parse().map_err(|_| at.err(format!("{raw:?} is not an IP address")))
}

impl TryFrom<raw::Pod> for Pod {
    type Error = ConfigError;
    fn try_from(raw: raw::Pod) -> Result<Self, ConfigError> {
        let info = k8s_meta(Kind::Pod, raw.metadata)?;
        finish(&info, pod(&info, raw.spec, raw.status))
    }
}

fn pod(info: &ObjectInfo, spec: raw::PodSpec, status: raw::PodStatus) -> FieldResult<Pod> {
    let at = Path::root("spec.containers");
    let mut containers = Vec::new();
    for (i, c) in spec.containers.into_iter().enumerate() {
        let at = at.index(i).key("ports");
        let ports = c
            .ports
            .into_iter()
            .enumerate()
            .map(|(j, p)| {
                let at = at.index(j);
                Ok(ContainerPort {
                    port: port(p.container_port, &at.key("containerPort"))?,
                    protocol: protocol(p.protocol.as_deref(), &at.key("protocol"))?,
                    name: p.name,
                })
            })
            .collect::<FieldResult<_>>()?;
        containers.push(Container { name: c.name, ports });
    }
    let pod_ip = status.pod_ip.filter(|s| !s.is_empty()).map(|s| ip(&s, &Path::root("status.podIP"))).transpose()?;
    let mut ips = Vec::new();
    for (i, p) in status.pod_ips.iter().enumerate() {
        ips.push(ip(&p.ip, &Path::root("status.podIPs").index(i).key("ip"))?);
    }
    if ips.is_empty() {
        ips.extend(pod_ip);
    }
    let phase = match status.phase.as_deref().unwrap_or("Pending") {
        "Pending" => PodPhase::Pending,
        "Running" => PodPhase::Running,
        "Succeeded" => PodPhase::Succeeded,
        "Failed" => PodPhase::Failed,
        "Unknown" => PodPhase::Unknown,
        other => return Err(Path::root("status.phase").err(format!("unknown pod phase {other:?}"))),
    };
    let service_account = spec.service_account_name.or(spec.service_account).filter(|s| !s.is_empty());
    Ok(Pod {
        meta: info.meta.clone(),
        uid: info.uid.clone(),
        node_name: spec.node_name.filter(|n| !n.is_empty()),
        service_account: service_account.unwrap_or_else(|| "default".to_string()),
        host_network: spec.host_network.unwrap_or(false),
        containers,
        ip: pod_ip.or_else(|| ips.first().copied()),
        ips,
        phase,
    })
}

impl TryFrom<raw::Service> for Service {
    type Error = ConfigError;
    fn try_from(raw: raw::Service) -> Result<Self, ConfigError> {
        let info = k8s_meta(Kind::Service, raw.metadata)?;
        finish(&info, service(&info, raw.spec))
    }
}

fn service(info: &ObjectInfo, spec: raw::ServiceSpec) -> FieldResult<Service> {
    let service_type = match spec.service_type.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceType::ClusterIP,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        "ExternalName" => ServiceType::ExternalName,
        other => return Err(Path::root("spec.type").err(format!("unknown service type {other:?}"))),
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut raw_ips = spec.cluster_ips;
    if raw_ips.is_empty() {
        raw_ips.extend(spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None"));
    }
    let at = Path::root("spec.clusterIPs");
    let cluster_ips = raw_ips
        .iter()
        .filter(|s| s.as_str() != "None")
        .enumerate()
        .map(|(i, s)| ip(s, &at.index(i)))
        .collect::<FieldResult<_>>()?;
    let at = Path::root("spec.ports");
    let mut ports = Vec::new();
    for (i, p) in spec.ports.into_iter().enumerate() {
        let at = at.index(i);
        let number = port(p.port, &at.key("port"))?;
        let target_port = match p.target_port {
            None => TargetPort::Number(number),
            Some(IntOrString::Int(n)) => TargetPort::Number(port(n, &at.key("targetPort"))?),
            Some(IntOrString::String(s)) => match s.parse::<i64>() {
                Ok(n) => TargetPort::Number(port(n, &at.key("targetPort"))?),
                Err(_) => TargetPort::Name(s),
            },
        };
        let protocol = protocol(p.protocol.as_deref(), &at.key("protocol"))?;
        ports.push(ServicePort { name: p.name, port: number, target_port, protocol, app_protocol: p.app_protocol });
    }
    let selector = spec.selector.map(|s| labels(&s, &Path::root("spec.selector"))).transpose()?;
    let waypoint = info.meta.labels.get(Service::USE_WAYPOINT_LABEL).filter(|w| w.as_str() != "none").cloned();
    Ok(Service { meta: info.meta.clone(), service_type, headless, cluster_ips, ports, selector, waypoint })
}

impl TryFrom<raw::EndpointSlice> for EndpointSlice {
    type Error = ConfigError;
    fn try_from(raw: raw::EndpointSlice) -> Result<Self, ConfigError> {
        let info = k8s_meta(Kind::EndpointSlice, raw.metadata)?;
        finish(&info, endpoint_slice(&info, raw.address_type, raw.endpoints, raw.ports))
    }
}

fn endpoint_slice(
    info: &ObjectInfo,
    address_type: String,
    endpoints: Vec<raw::Endpoint>,
    ports: Vec<raw::EndpointPort>,
) -> FieldResult<EndpointSlice> {
    let address_type = match address_type.as_str() {
        "IPv4" => AddressType::IPv4,
        "IPv6" => AddressType::IPv6,
        "FQDN" => {
            return Err(Path::root("addressType")
                .err("FQDN EndpointSlices are not supported by Ambit (Kubernetes deprecated them); use IPv4 or IPv6"));
        }
        other => return Err(Path::root("addressType").err(format!("addressType {other:?} is not one of IPv4, IPv6"))),
    };
    let at = Path::root("endpoints");
    let mut out = Vec::new();
    for (i, e) in endpoints.into_iter().enumerate() {
        let at = at.index(i);
        let addresses = e
            .addresses
            .iter()
            .enumerate()
            .map(|(j, a)| ip(a, &at.key("addresses").index(j)))
            .collect::<FieldResult<_>>()?;
        let ready = e.conditions.ready.unwrap_or(true);
        let target = e.target_ref.map(|t| EndpointTarget {
            kind: t.kind.unwrap_or_default(),
            name: t.name.unwrap_or_default(),
            namespace: t.namespace,
            uid: t.uid,
        });
        out.push(Endpoint {
            addresses,
            ready,
            serving: e.conditions.serving.unwrap_or(ready),
            terminating: e.conditions.terminating.unwrap_or(false),
            target,
            node_name: e.node_name,
        });
    }
    let at = Path::root("ports");
    let mut out_ports = Vec::new();
    for (i, p) in ports.into_iter().enumerate() {
        let at = at.index(i);
        out_ports.push(EndpointPort {
            port: p.port.map(|n| port(n, &at.key("port"))).transpose()?,
            protocol: protocol(p.protocol.as_deref(), &at.key("protocol"))?,
            name: p.name.filter(|n| !n.is_empty()),
            app_protocol: p.app_protocol,
        });
    }
    let service_name = info.meta.labels.get(EndpointSlice::SERVICE_NAME_LABEL).cloned();
    Ok(EndpointSlice { meta: info.meta.clone(), service_name, address_type, endpoints: out, ports: out_ports })
}

impl TryFrom<raw::Gateway> for Gateway {
    type Error = ConfigError;
    fn try_from(raw: raw::Gateway) -> Result<Self, ConfigError> {
        let info = k8s_meta(Kind::Gateway, raw.metadata)?;
        let at = Path::root("spec.listeners");
        let listeners = raw
            .spec
            .listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                Ok(Listener { port: port(l.port, &at.index(i).key("port"))?, name: l.name, protocol: l.protocol })
            })
            .collect::<FieldResult<_>>();
        let listeners = finish(&info, listeners)?;
        Ok(Gateway { meta: info.meta, class_name: raw.spec.gateway_class_name, listeners })
    }
}
