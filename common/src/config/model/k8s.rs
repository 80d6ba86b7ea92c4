//! Validated Kubernetes objects: only the fields Ambit uses.

use std::net::IpAddr;

use serde::Serialize;

use super::ObjectMeta;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Namespace {
    pub meta: ObjectMeta,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServiceAccount {
    pub meta: ObjectMeta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Pod {
    pub meta: ObjectMeta,
    pub uid: Option<String>,
    pub node_name: Option<String>,
    /// `default` when the pod names none, as Kubernetes fills it in.
    pub service_account: String,
    pub host_network: bool,
    pub containers: Vec<Container>,
    /// The primary IP (`status.podIP`); `None` until the pod is scheduled and networked.
    pub ip: Option<IpAddr>,
    /// All IPs (`status.podIPs`), primary first.
    pub ips: Vec<IpAddr>,
    pub phase: PodPhase,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Container {
    pub name: String,
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Service {
    pub meta: ObjectMeta,
    pub service_type: ServiceType,
    /// `clusterIP: None` makes a headless service: no VIP, clients reach pods directly.
    pub headless: bool,
    /// The VIPs (`clusterIPs`, or `clusterIP` when that is all there is), primary first.
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `None` for a service without a selector (its endpoints are managed by hand).
    pub selector: Option<super::Labels>,
    /// The `istio.io/use-waypoint` label: the waypoint (Gateway name) this service's
    /// traffic goes through; `None` also when the label is `none` (opted out).
    pub waypoint: Option<String>,
}

impl Service {
    /// The label naming the waypoint a service's traffic goes through.
    pub const USE_WAYPOINT_LABEL: &'static str = "istio.io/use-waypoint";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetPort {
    Number(u16),
    /// A container port name, resolved per pod.
    Name(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AddressType {
    IPv4,
    IPv6,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointSlice {
    pub meta: ObjectMeta,
    /// The `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    pub address_type: AddressType,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

impl EndpointSlice {
    /// The label tying an EndpointSlice to its Service.
    pub const SERVICE_NAME_LABEL: &'static str = "kubernetes.io/service-name";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// Unset conditions resolved as Kubernetes documents: ready when unset, serving as
    /// ready when unset, not terminating when unset.
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub target: Option<EndpointTarget>,
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointTarget {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub uid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub protocol: Protocol,
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Gateway {
    pub meta: ObjectMeta,
    pub class_name: String,
    pub listeners: Vec<Listener>,
}

impl Gateway {
    /// The GatewayClass Istio uses for waypoints.
    pub const WAYPOINT_CLASS: &'static str = "istio-waypoint";

    pub fn is_waypoint(&self) -> bool {
        self.class_name == Self::WAYPOINT_CLASS
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Listener {
    pub name: String,
    pub port: u16,
    /// Gateway API protocol, e.g. `HBONE`, `HTTP`, `TCP`.
    pub protocol: String,
}
