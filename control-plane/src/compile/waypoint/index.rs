//! The snapshot, indexed the way waypoint compilation looks things up: services (Kubernetes
//! Services and ServiceEntry hosts) by hostname, pods by name, EndpointSlices by service,
//! namespace labels by name.

use std::collections::{BTreeMap, BTreeSet};

use ambit_common::{
    api::v1::AppProtocol,
    config::{
        Snapshot,
        model::{EndpointSlice, Labels, Pod, PodPhase, Protocol, Service, ServiceEntry, ServiceType},
    },
};

use super::{policy::RuleIndex, routes::VsIndex};
use crate::compile::MeshConfig;

/// A Kubernetes Service or one host of a ServiceEntry: something a route can send to.
pub(super) struct ServiceView<'a> {
    pub(super) hostname: String,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    /// The object's labels (`istio.io/use-waypoint` lives here).
    pub(super) labels: &'a Labels,
    /// TCP ports only: UDP and SCTP never reach a waypoint.
    pub(super) ports: Vec<PortView<'a>>,
    pub(super) source: Source<'a>,
}

pub(super) enum Source<'a> {
    Kubernetes(&'a Service),
    Entry(&'a ServiceEntry),
}

pub(super) struct PortView<'a> {
    pub(super) port: u16,
    pub(super) name: Option<&'a str>,
    pub(super) protocol: AppProtocol,
}

impl ServiceView<'_> {
    pub(super) fn port(&self, port: u16) -> Option<&PortView<'_>> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The virtual IPs node proxies send this service's traffic to (and name in the CONNECT
    /// authority): a Service's cluster IPs (none when headless), a ServiceEntry's single-address
    /// `addresses`. The same addresses as the node proxies' `Service.vips`.
    pub(super) fn vips(&self) -> Vec<Vec<u8>> {
        let bytes = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        match self.source {
            Source::Kubernetes(svc) if svc.headless => Vec::new(),
            Source::Kubernetes(svc) => svc.cluster_ips.iter().copied().map(bytes).collect(),
            Source::Entry(se) => se
                .addresses
                .iter()
                .filter(|block| block.prefix_len == if block.addr.is_ipv4() { 32 } else { 128 })
                .map(|block| bytes(block.addr))
                .collect(),
        }
    }
}

pub(super) struct Index<'a> {
    pub(super) mesh: &'a MeshConfig,
    /// By hostname. A Kubernetes Service wins over a ServiceEntry naming the same host.
    pub(super) services: BTreeMap<String, ServiceView<'a>>,
    namespaces: BTreeMap<&'a str, &'a Labels>,
    /// By namespace, then name.
    pods: BTreeMap<&'a str, BTreeMap<&'a str, &'a Pod>>,
    /// Live pods by namespace, label key and label value: the candidates for a selector.
    labelled: BTreeMap<&'a str, BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a Pod>>>>,
    /// By namespace, then service name.
    slices: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a EndpointSlice>>>,
    pub(super) rules: RuleIndex<'a>,
    pub(super) virtual_services: VsIndex<'a>,
    /// Waypoint Gateways, as (namespace, name).
    waypoints: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Index<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, mesh: &'a MeshConfig) -> Self {
        let mut services = BTreeMap::new();
        for entry in snapshot.service_entries() {
            for view in entry_views(entry) {
                services.insert(view.hostname.clone(), view);
            }
        }
        for service in snapshot.services().filter(|s| s.service_type != ServiceType::ExternalName) {
            let view = service_view(service, mesh);
            services.insert(view.hostname.clone(), view);
        }
        let mut slices: BTreeMap<_, BTreeMap<_, Vec<_>>> = BTreeMap::new();
        for slice in snapshot.endpoint_slices() {
            if let Some(service) = &slice.service_name {
                let by_service = slices.entry(slice.meta.namespace.as_str()).or_default();
                by_service.entry(service.as_str()).or_default().push(slice);
            }
        }
        let mut pods: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
        let mut labelled: BTreeMap<_, BTreeMap<_, BTreeMap<_, Vec<_>>>> = BTreeMap::new();
        for pod in snapshot.pods() {
            let namespace = pod.meta.namespace.as_str();
            pods.entry(namespace).or_default().insert(pod.meta.name.as_str(), pod);
            if is_live(pod) {
                let by_key = labelled.entry(namespace).or_default();
                for (k, v) in &pod.meta.labels {
                    by_key.entry(k.as_str()).or_default().entry(v.as_str()).or_default().push(pod);
                }
            }
        }
        Self {
            mesh,
            services,
            namespaces: snapshot.namespaces().map(|n| (n.meta.name.as_str(), &n.meta.labels)).collect(),
            pods,
            labelled,
            slices,
            rules: RuleIndex::new(snapshot, mesh),
            virtual_services: VsIndex::new(snapshot, mesh),
            waypoints: snapshot
                .gateways()
                .filter(|g| g.is_waypoint())
                .map(|g| (g.meta.namespace.as_str(), g.meta.name.as_str()))
                .collect(),
        }
    }

    pub(super) fn is_waypoint(&self, namespace: &str, name: &str) -> bool {
        self.waypoints.iter().any(|(ns, n)| *ns == namespace && *n == name)
    }

    /// A namespace's labels; `None` when the namespace is unknown.
    pub(super) fn namespace_labels(&self, namespace: &str) -> Option<&'a Labels> {
        self.namespaces.get(namespace).copied()
    }

    pub(super) fn pod(&self, namespace: &str, name: &str) -> Option<&'a Pod> {
        self.pods.get(namespace)?.get(name).copied()
    }

    /// The live pods carrying every label in `labels` (which must not be empty), in `namespace`
    /// or in any; by namespace and name.
    pub(super) fn live_pods_with(&self, namespace: Option<&str>, labels: &Labels) -> Vec<&'a Pod> {
        let Some((key, value)) = labels.iter().next() else { return Vec::new() };
        let namespaces: Vec<_> = match namespace {
            Some(ns) => self.labelled.get(ns).into_iter().collect(),
            None => self.labelled.values().collect(),
        };
        namespaces
            .into_iter()
            .filter_map(|by_key| by_key.get(key.as_str())?.get(value.as_str()))
            .flatten()
            .copied()
            .filter(|p| labels.iter().all(|(k, v)| p.meta.labels.get(k) == Some(v)))
            .collect()
    }

    pub(super) fn slices(&self, namespace: &str, service: &str) -> &[&'a EndpointSlice] {
        self.slices.get(namespace).and_then(|s| s.get(service)).map_or(&[], Vec::as_slice)
    }

    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub(super) fn identity(&self, namespace: &str, service_account: &str) -> String {
        format!("spiffe://{}/ns/{namespace}/sa/{service_account}", self.mesh.trust_domain)
    }

    pub(super) fn resolve(&self, host: &str, namespace: &str) -> String {
        resolve(host, namespace, self.mesh)
    }
}

/// `host` as named by an object in `namespace`, fully qualified: Istio's short-name rule
/// ([`ambit_common::config::hosts::resolve`]), with the mesh's cluster domain.
pub(super) fn resolve(host: &str, namespace: &str, mesh: &MeshConfig) -> String {
    ambit_common::config::hosts::resolve(host, namespace, &mesh.cluster_domain)
}

/// Running, or about to, with an address: an endpoint or source candidate.
fn is_live(pod: &Pod) -> bool {
    pod.ip.is_some() && !matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed)
}

fn service_hostname(name: &str, namespace: &str, mesh: &MeshConfig) -> String {
    ambit_common::config::hosts::service_hostname(name, namespace, &mesh.cluster_domain)
}

fn service_view<'a>(service: &'a Service, mesh: &MeshConfig) -> ServiceView<'a> {
    let ports = service
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .map(|p| PortView {
            port: p.port,
            name: p.name.as_deref(),
            protocol: protocol(p.app_protocol.as_deref(), p.name.as_deref()),
        })
        .collect();
    ServiceView {
        hostname: service_hostname(&service.meta.name, &service.meta.namespace, mesh),
        namespace: &service.meta.namespace,
        name: &service.meta.name,
        labels: &service.meta.labels,
        ports,
        source: Source::Kubernetes(service),
    }
}

/// One view per host, taken as written (as Istio does for ServiceEntry hosts); wildcard hosts
/// are patterns, not services a request can be addressed to.
fn entry_views(entry: &ServiceEntry) -> impl Iterator<Item = ServiceView<'_>> {
    entry.hosts.iter().filter(|h| !h.starts_with('*')).map(move |host| ServiceView {
        hostname: host.clone(),
        namespace: &entry.meta.namespace,
        name: &entry.meta.name,
        labels: &entry.meta.labels,
        ports: entry
            .ports
            .iter()
            .map(|p| PortView { port: p.number, name: Some(&p.name), protocol: named_protocol(p.protocol.as_deref()) })
            .collect(),
        source: Source::Entry(entry),
    })
}

/// Istio's protocol selection for a Service port: `appProtocol`, else the port name's prefix
/// (`http-web` → http); undeclared ports are detected.
/// <https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/>
pub(super) fn protocol(app_protocol: Option<&str>, port_name: Option<&str>) -> AppProtocol {
    if let Some(declared) = app_protocol {
        return named_protocol(Some(declared));
    }
    let prefix = port_name.map(|n| n.split_once('-').map_or(n, |(p, _)| p));
    named_protocol(prefix)
}

fn named_protocol(name: Option<&str>) -> AppProtocol {
    let Some(name) = name else { return AppProtocol::Unspecified };
    match name.to_ascii_lowercase().as_str() {
        "http" | "http_proxy" | "kubernetes.io/ws" => AppProtocol::Http,
        "http2" | "grpc-web" | "kubernetes.io/h2c" => AppProtocol::Http2,
        "grpc" => AppProtocol::Grpc,
        "tcp" | "tls" | "https" | "mongo" | "redis" | "mysql" | "kubernetes.io/wss" => AppProtocol::Tcp,
        _ => AppProtocol::Unspecified,
    }
}
