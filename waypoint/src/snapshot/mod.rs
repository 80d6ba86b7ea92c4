//! The configuration the data path runs on: every `RouteTable`, `Cluster` and
//! `HttpAuthorization` the control plane sent, compiled once per accepted update into an
//! immutable [`Snapshot`], published through a `watch` channel. Requests take the snapshot in
//! force when they start and keep it; an update that does not compile is refused (NACKed) with
//! an error naming the resource and field, and the last good snapshot keeps serving.
//!
//! Service ports are indexed by `(vip, port)` here, once per update: a CONNECT's authority is
//! one map lookup. Workloads bound to the waypoint are indexed by address; a CONNECT to one of
//! their addresses that no service VIP claims gets a service port synthesized for it
//! ([`workload`]).

mod route;
mod workload;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ambit_common::{
    api::v1::{AppProtocol, ResourceType, resource::Kind},
    discovery::ResourceSet,
};
use serde::Serialize;
use tokio::sync::watch;

pub use self::{
    route::{Action, Forward, Route, RouteActionError, Target},
    workload::{BoundTarget, ROUTE_NAME as WORKLOAD_ROUTE, WorkloadError},
};
use crate::{
    authz::{Authorizer, AuthzError},
    route::{PortRouter, RouteError},
    upstream::{ClusterState, cluster::ClusterError, cluster::ClusterStatus},
};

/// Why an update cannot be used. Each names the resource (and field) at fault.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("route table {hostname} port {port}, route {route:?}: {source}")]
    RouteAction { hostname: String, port: u32, route: String, source: Box<RouteActionError> },
    #[error("route table {hostname} port {port}, tcp route #{index}: {source}")]
    TcpRoute { hostname: String, port: u32, index: usize, source: Box<RouteActionError> },
    #[error("route table {hostname}: vips[{index}] has {len} bytes (4 or 16 expected)")]
    Vip { hostname: String, index: usize, len: usize },
    #[error("route table {hostname}: ports: {port} is not a TCP port")]
    Port { hostname: String, port: u32 },
    #[error("route table {hostname}: protocol {value} of port {port} is unknown (is the control plane newer?)")]
    Protocol { hostname: String, port: u32, value: i32 },
    #[error("route tables {first} and {second} both claim {address}: a VIP and port select one service")]
    Conflict { first: String, second: String, address: SocketAddr },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

/// What a CONNECT's authority named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressed {
    /// A service VIP and port: its route table applies.
    Service,
    /// A bound workload's address and port: no service, so no VirtualService; only the
    /// waypoint's own authorization policies apply.
    Workload,
}

/// One port of a service bound to this waypoint, or one port of a bound workload (synthesized).
pub struct ServicePort {
    /// The service's hostname; for a workload, `workload <namespace>/<name>` (for logs).
    pub hostname: String,
    pub addressed: Addressed,
    pub port: u16,
    pub protocol: AppProtocol,
    pub router: PortRouter,
    /// `routes[i]` is the router's HTTP route `i`, compiled.
    pub routes: Vec<Route>,
    /// `tcp[i]` holds the clusters of TCP route `i`, aligned with its `clusters`.
    pub tcp: Vec<Vec<Arc<ClusterState>>>,
}

impl ServicePort {
    /// The service authorization policies see: `None` for a workload, to which only the
    /// policies attached to the waypoint itself (no `hostnames`) apply.
    pub fn authz_service(&self) -> Option<&str> {
        match self.addressed {
            Addressed::Service => Some(&self.hostname),
            Addressed::Workload => None,
        }
    }
}

#[derive(Default)]
pub struct Snapshot {
    pub version: u64,
    services: HashMap<SocketAddr, Arc<ServicePort>>,
    /// Bound workloads by address.
    workloads: HashMap<IpAddr, Arc<BoundTarget>>,
    pub clusters: BTreeMap<String, Arc<ClusterState>>,
    pub authz: Option<Authorizer>,
    /// Route tables by hostname: their VIPs and ports, for `/config_dump`.
    tables: BTreeMap<String, TableSummary>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TableSummary {
    virtual_service: String,
    vips: Vec<IpAddr>,
    ports: Vec<PortSummary>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PortSummary {
    port: u32,
    protocol: &'static str,
    http_routes: Vec<String>,
    tcp_routes: usize,
}

impl Snapshot {
    /// Compiles `resources`; clusters carry over the state of their version in `previous`.
    pub fn compile(resources: &ResourceSet, previous: Option<&Snapshot>) -> Result<Self, CompileError> {
        let mut clusters = BTreeMap::new();
        for resource in resources.of_type(ResourceType::Cluster) {
            if let Some(Kind::Cluster(cluster)) = &resource.kind {
                let old = previous.and_then(|p| p.clusters.get(&resource.name));
                clusters.insert(resource.name.clone(), ClusterState::build(&resource.name, cluster, old)?);
            }
        }
        let policies = resources.of_type(ResourceType::HttpAuthorization).filter_map(|r| match &r.kind {
            Some(Kind::HttpAuthorization(policy)) => Some(policy),
            _ => None,
        });
        let authz = Authorizer::new(policies)?;
        for (policy, attributes) in authz.not_enforced() {
            tracing::warn!(%policy, ?attributes, "authorization policy attributes this waypoint cannot evaluate (removed, failing closed)");
        }
        let mut services: HashMap<SocketAddr, Arc<ServicePort>> = HashMap::new();
        let mut tables = BTreeMap::new();
        for resource in resources.of_type(ResourceType::RouteTable) {
            let Some(Kind::RouteTable(table)) = &resource.kind else { continue };
            let hostname = &table.hostname;
            let vips = table
                .vips
                .iter()
                .enumerate()
                .map(|(index, vip)| {
                    ip(vip).ok_or(CompileError::Vip { hostname: hostname.clone(), index, len: vip.len() })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut ports = Vec::new();
            for port_routes in &table.ports {
                let service = Arc::new(compile_port(hostname, port_routes, &clusters)?);
                ports.push(PortSummary {
                    port: port_routes.port,
                    protocol: service.protocol.as_str_name(),
                    http_routes: service.routes.iter().map(|r| r.name.clone()).collect(),
                    tcp_routes: service.tcp.len(),
                });
                for vip in &vips {
                    let address = SocketAddr::new(*vip, service.port);
                    if let Some(other) = services.insert(address, service.clone()) {
                        return Err(CompileError::Conflict {
                            first: other.hostname.clone(),
                            second: hostname.clone(),
                            address,
                        });
                    }
                }
            }
            tables
                .insert(hostname.clone(), TableSummary { virtual_service: table.virtual_service.clone(), vips, ports });
        }
        let workloads = compile_workloads(resources, previous)?;
        Ok(Self { version: resources.version(), services, workloads, clusters, authz: Some(authz), tables })
    }

    /// The service port a CONNECT to `destination` is for: a service's (`vip:port`), else a bound
    /// workload's (`<workload ip>:<port>`, synthesized on first use).
    pub fn service(&self, destination: SocketAddr) -> Option<Arc<ServicePort>> {
        if let Some(service) = self.services.get(&destination) {
            return Some(service.clone());
        }
        self.workloads.get(&destination.ip())?.port(destination)
    }

    /// The bound workload with address `ip`.
    pub fn workload(&self, ip: IpAddr) -> Option<&Arc<BoundTarget>> {
        self.workloads.get(&ip)
    }

    pub fn dump(&self) -> serde_json::Value {
        let clusters: Vec<ClusterStatus> = self.clusters.values().map(|c| c.status()).collect();
        let mut workloads: Vec<_> = self.workloads.values().map(|w| (w.uid(), w)).collect();
        workloads.sort_by_key(|(uid, _)| *uid);
        workloads.dedup_by_key(|(uid, _)| *uid);
        let workloads: Vec<_> = workloads.into_iter().map(|(_, w)| w.summary()).collect();
        serde_json::json!({
            "version": self.version,
            "routeTables": self.tables,
            "clusters": clusters,
            "boundWorkloads": workloads,
        })
    }
}

/// Bound workloads by address. Two claiming one address (a stale pod object) is not refused:
/// the first by uid keeps it, as the control plane keeps one pod per IP.
fn compile_workloads(
    resources: &ResourceSet,
    previous: Option<&Snapshot>,
) -> Result<HashMap<IpAddr, Arc<BoundTarget>>, CompileError> {
    let mut by_address: HashMap<IpAddr, Arc<BoundTarget>> = HashMap::new();
    for resource in resources.of_type(ResourceType::BoundWorkload) {
        let Some(Kind::BoundWorkload(config)) = &resource.kind else { continue };
        let old = previous.and_then(|p| {
            let first = config.addresses.first().and_then(|a| ip(a))?;
            p.workloads.get(&first).filter(|t| t.uid() == config.uid)
        });
        let target = BoundTarget::build(config, old)?;
        for address in target.addresses() {
            match by_address.get(address) {
                Some(other) => tracing::warn!(%address, kept = %other.uid(), ignored = %target.uid(),
                    "two bound workloads claim one address; the first keeps it (a stale pod object?)"),
                None => {
                    by_address.insert(*address, target.clone());
                }
            }
        }
    }
    Ok(by_address)
}

fn compile_port(
    hostname: &str,
    routes: &ambit_common::api::v1::PortRoutes,
    clusters: &BTreeMap<String, Arc<ClusterState>>,
) -> Result<ServicePort, CompileError> {
    let port = u16::try_from(routes.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(CompileError::Port { hostname: hostname.to_owned(), port: routes.port })?;
    let protocol = AppProtocol::try_from(routes.protocol).map_err(|_| CompileError::Protocol {
        hostname: hostname.to_owned(),
        port: routes.port,
        value: routes.protocol,
    })?;
    let router = PortRouter::new(hostname, routes)?;
    let compiled = routes
        .http
        .iter()
        .enumerate()
        .map(|(i, r)| {
            route::compile(r, clusters).map_err(|source| CompileError::RouteAction {
                hostname: hostname.to_owned(),
                port: routes.port,
                route: if r.name.is_empty() { format!("#{i}") } else { r.name.clone() },
                source: Box::new(source),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tcp = routes
        .tcp
        .iter()
        .enumerate()
        .map(|(index, r)| {
            r.clusters
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    clusters.get(&c.cluster).cloned().ok_or_else(|| CompileError::TcpRoute {
                        hostname: hostname.to_owned(),
                        port: routes.port,
                        index,
                        source: Box::new(RouteActionError::MissingCluster {
                            field: format!("clusters[{i}]"),
                            cluster: c.cluster.clone(),
                        }),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServicePort {
        hostname: hostname.to_owned(),
        addressed: Addressed::Service,
        port,
        protocol,
        router,
        routes: compiled,
        tcp,
    })
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// Where the data path gets its snapshot, and where updates are applied.
#[derive(Clone)]
pub struct ConfigStore {
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self { tx: Arc::new(watch::channel(Arc::new(Snapshot::default())).0) }
    }
}

impl ConfigStore {
    /// Compiles `resources` and, if that succeeds, makes it the snapshot in force. On error the
    /// snapshot in force stays (the caller NACKs with the error).
    pub fn apply(&self, resources: &ResourceSet) -> Result<(), CompileError> {
        let current = self.tx.borrow().clone();
        let next = Snapshot::compile(resources, Some(&current))?;
        tracing::info!(
            version = next.version,
            services = next.services.len(),
            workload_addresses = next.workloads.len(),
            clusters = next.clusters.len(),
            "configuration applied"
        );
        self.tx.send_replace(Arc::new(next));
        Ok(())
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Whether a configuration has been applied.
    pub fn has_config(&self) -> bool {
        self.tx.borrow().authz.is_some()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests;
