//! VirtualServices → a service's RouteTable: which VirtualService applies, destinations to
//! cluster names, one list of HTTP and TCP routes per service port, default routes.

use std::collections::{BTreeMap, BTreeSet};

use ambit_common::{
    api::v1::{AppProtocol, PortRoutes, RouteTable, TcpRoute, WeightedCluster},
    config::{
        Snapshot, hosts,
        model::{Destination, L4Match, TcpRoute as ModelTcpRoute, VirtualService},
    },
};

use super::{
    Ctx, actions,
    index::{PortView, ServiceView, resolve},
    matches,
};
use crate::compile::MeshConfig;

/// The `gateways` value that means sidecars and waypoints (rather than ingress gateways).
pub(super) const MESH_GATEWAY: &str = "mesh";

/// A Cluster resource: `<hostname>|<port>|<subset>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ClusterKey {
    pub(super) hostname: String,
    pub(super) port: u16,
    pub(super) subset: String,
}

impl ClusterKey {
    pub(super) fn name(&self) -> String {
        format!("{}|{}|{}", self.hostname, self.port, self.subset)
    }
}

/// Mesh-bound VirtualServices (`gateways` empty or naming `mesh`) by the hosts they list, fully
/// qualified.
pub(super) struct VsIndex<'a> {
    exact: BTreeMap<String, Vec<&'a VirtualService>>,
    wildcards: Vec<(String, &'a VirtualService)>,
}

impl<'a> VsIndex<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, mesh: &MeshConfig) -> Self {
        let mut index = Self { exact: BTreeMap::new(), wildcards: Vec::new() };
        let mesh_bound = |vs: &&VirtualService| vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY);
        for vs in snapshot.virtual_services().filter(mesh_bound) {
            for host in &vs.hosts {
                let host = resolve(host, &vs.meta.namespace, mesh);
                if host.starts_with('*') {
                    index.wildcards.push((host, vs));
                } else {
                    index.exact.entry(host).or_default().push(vs);
                }
            }
        }
        index
    }

    /// The VirtualService that routes `hostname` for a waypoint in `namespace`: among those
    /// visible there (own namespace or `exportTo`), an exact host beats a wildcard and a longer
    /// wildcard a shorter one (Envoy's virtual-host choice). Istio does not merge VirtualServices
    /// for one host outside gateways (IST0109): it keeps the oldest, ties broken by name, then
    /// namespace. Ambit has no creation times, so name then namespace decides.
    pub(super) fn for_host(&self, namespace: &str, hostname: &str) -> Option<&'a VirtualService> {
        let visible = |vs: &VirtualService| vs.meta.namespace == namespace || vs.export_to.visible_to(namespace);
        let exact = self.exact.get(hostname).into_iter().flatten().copied().filter(|vs| visible(vs));
        if let Some(vs) = exact.min_by(|a, b| by_name(a, b)) {
            return Some(vs);
        }
        self.wildcards
            .iter()
            .filter(|(pattern, vs)| visible(vs) && hosts::matches(pattern, hostname))
            .max_by(|(p, a), (q, b)| p.len().cmp(&q.len()).then_with(|| by_name(b, a)))
            .map(|(_, vs)| *vs)
    }
}

fn by_name(a: &VirtualService, b: &VirtualService) -> std::cmp::Ordering {
    (&a.meta.name, &a.meta.namespace).cmp(&(&b.meta.name, &b.meta.namespace))
}

impl Ctx<'_> {
    /// The cluster a destination names, with Istio's choice of port (`GetDestinationCluster`):
    /// the destination's own; else the destination service's only port; else the port the
    /// request came to.
    pub(super) fn cluster_key(&self, dest: &Destination, vs_namespace: &str, listener_port: u16) -> ClusterKey {
        let hostname = self.index.resolve(&dest.host, vs_namespace);
        let port = dest.port.unwrap_or_else(|| match self.index.services.get(&hostname) {
            Some(s) if s.ports.len() == 1 => s.ports[0].port,
            _ => listener_port,
        });
        ClusterKey { hostname, port, subset: dest.subset.clone().unwrap_or_default() }
    }
}

/// Collects the clusters the compiled routes refer to.
pub(super) type ClusterRefs = BTreeSet<ClusterKey>;

pub(super) fn route_table(ctx: &Ctx<'_>, service: &ServiceView<'_>, refs: &mut ClusterRefs) -> RouteTable {
    let vs = ctx.index.virtual_services.for_host(ctx.waypoint_namespace, &service.hostname);
    let ports = service.ports.iter().map(|port| port_routes(ctx, service, vs, port, refs)).collect();
    RouteTable {
        hostname: service.hostname.clone(),
        namespace: service.namespace.to_string(),
        name: service.name.to_string(),
        virtual_service: vs.map(|v| format!("{}/{}", v.meta.namespace, v.meta.name)).unwrap_or_default(),
        ports,
        vips: service.vips(),
    }
}

fn port_routes(
    ctx: &Ctx<'_>,
    service: &ServiceView<'_>,
    vs: Option<&VirtualService>,
    port: &PortView<'_>,
    refs: &mut ClusterRefs,
) -> PortRoutes {
    let own = ClusterKey { hostname: service.hostname.clone(), port: port.port, subset: String::new() };
    // An undeclared protocol is detected, so such a port needs both kinds of routes. Istio falls
    // back to the default route when the VirtualService yields no route for a port.
    let (carries_http, carries_tcp) = match port.protocol {
        AppProtocol::Unspecified => (true, true),
        AppProtocol::Tcp => (false, true),
        AppProtocol::Http | AppProtocol::Http2 | AppProtocol::Grpc => (true, false),
    };
    let mut http = Vec::new();
    if carries_http {
        http = vs.map(|vs| super::http::routes(ctx, vs, port.port, refs)).unwrap_or_default();
        if http.is_empty() {
            http.push(super::http::default_route(ctx, &own));
            refs.insert(own.clone());
        }
    }
    let mut tcp = Vec::new();
    if carries_tcp {
        tcp = vs.map(|vs| tcp_routes(ctx, vs, port.port, refs)).unwrap_or_default();
        if tcp.is_empty() {
            tcp.push(TcpRoute { matches: Vec::new(), clusters: vec![plain_cluster(&own, 100)] });
            refs.insert(own);
        }
    }
    PortRoutes {
        port: u32::from(port.port),
        name: port.name.unwrap_or_default().to_string(),
        protocol: port.protocol.into(),
        http,
        tcp,
    }
}

fn tcp_routes(ctx: &Ctx<'_>, vs: &VirtualService, port: u16, refs: &mut ClusterRefs) -> Vec<TcpRoute> {
    let mut out = Vec::new();
    for route in &vs.tcp {
        let Some(compiled) = tcp_route(ctx, vs, route, port, refs) else { continue };
        let catch_all = compiled.matches.is_empty();
        out.push(compiled);
        if catch_all {
            break; // later routes are unreachable
        }
    }
    out
}

/// `None` when the route's matches all exclude this port or the mesh.
fn tcp_route(
    ctx: &Ctx<'_>,
    vs: &VirtualService,
    route: &ModelTcpRoute,
    port: u16,
    refs: &mut ClusterRefs,
) -> Option<TcpRoute> {
    let applicable = |m: &&L4Match| {
        m.port.is_none_or(|p| p == port) && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == MESH_GATEWAY))
    };
    let kept: Vec<_> = route.matches.iter().filter(applicable).collect();
    if !route.matches.is_empty() && kept.is_empty() {
        return None;
    }
    let mut matches: Vec<_> = kept.into_iter().map(|m| matches::tcp_match(ctx, m)).collect();
    if matches.iter().any(|m| *m == Default::default()) {
        matches.clear(); // one match without conditions matches everything
    }
    let clusters = actions::weighted(route.route.iter().map(|d| (&d.destination, d.weight)).collect())
        .into_iter()
        .map(|(dest, weight)| {
            let key = ctx.cluster_key(dest, &vs.meta.namespace, port);
            let cluster = plain_cluster(&key, weight);
            refs.insert(key);
            cluster
        })
        .collect();
    Some(TcpRoute { matches, clusters })
}

pub(super) fn plain_cluster(key: &ClusterKey, weight: u32) -> WeightedCluster {
    WeightedCluster { cluster: key.name(), weight, ..Default::default() }
}
