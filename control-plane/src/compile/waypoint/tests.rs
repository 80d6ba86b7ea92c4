//! Unit tests on small hand-written clusters. The bookinfo scenarios are in
//! `control-plane/tests/compile_waypoint.rs`; traffic-policy merging is in `tests/policy.rs`.

mod authz;
mod policy;
mod routing;
mod workloads;

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{Cluster, HttpRoute, PortRoutes, Resource, RouteTable, resource::Kind},
    config::{ConfigStore, Snapshot, parse_documents},
};

use super::{MeshConfig, WaypointKey};

/// Every waypoint's resources, compiled as the control plane does (the node proxies' workloads
/// first: bound workloads are read off them).
pub(super) fn compile(snapshot: &Snapshot, mesh: &MeshConfig) -> BTreeMap<WaypointKey, Vec<Resource>> {
    crate::compile::compile(snapshot, mesh).waypoints
}

/// A namespace `shop` enrolled in the mesh whose services all use the waypoint `shop/waypoint`,
/// a `cart` service with an HTTP and a gRPC port and two versions.
pub(super) const SHOP: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: cart}
  ports:
  - {name: http, port: 8080, targetPort: web}
  - {name: grpc-api, port: 9090, targetPort: 9090}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-v1, namespace: shop, uid: uid-cart-v1, labels: {app: cart, version: v1}}
spec:
  nodeName: node-1
  serviceAccountName: cart
  containers: [{name: cart, ports: [{name: web, containerPort: 8000}]}]
status: {phase: Running, podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-v2, namespace: shop, uid: uid-cart-v2, labels: {app: cart, version: v2}}
spec:
  nodeName: node-2
  serviceAccountName: cart
  containers: [{name: cart, ports: [{name: web, containerPort: 8001}]}]
status: {phase: Running, podIP: 10.1.0.2}
";

pub(super) fn snapshot(yaml: &str) -> Snapshot {
    let outcome = parse_documents(yaml, "test.yaml");
    let errors: Vec<_> = outcome.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut store = ConfigStore::new();
    let snapshot = store.apply(outcome);
    assert!(store.rejections().is_empty(), "{:#?}", store.rejections());
    snapshot
}

/// The resources of waypoint `namespace/name` compiled from `SHOP` plus `extra`.
pub(super) fn compiled_for(extra: &str, namespace: &str, name: &str) -> Vec<Resource> {
    let all = compile(&snapshot(&format!("{SHOP}---\n{extra}")), &MeshConfig::default());
    let key = WaypointKey { namespace: namespace.into(), name: name.into() };
    all.get(&key).cloned().unwrap_or_else(|| panic!("no waypoint {namespace}/{name} in {:?}", all.keys()))
}

pub(super) fn compiled(extra: &str) -> Vec<Resource> {
    compiled_for(extra, "shop", "waypoint")
}

pub(super) fn table<'r>(resources: &'r [Resource], hostname: &str) -> &'r RouteTable {
    resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::RouteTable(t)) if t.hostname == hostname => Some(t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no route table for {hostname}"))
}

pub(super) fn cluster<'r>(resources: &'r [Resource], name: &str) -> &'r Cluster {
    resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Cluster(c)) if r.name == name => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

pub(super) fn port(table: &RouteTable, port: u32) -> &PortRoutes {
    table.ports.iter().find(|p| p.port == port).unwrap_or_else(|| panic!("no port {port}"))
}

/// The HTTP routes of `cart`'s port 8080.
pub(super) fn cart_http(resources: &[Resource]) -> &[HttpRoute] {
    &port(table(resources, CART), 8080).http
}

pub(super) const CART: &str = "cart.shop.svc.cluster.local";

#[test]
fn helpers_round_up_milliseconds_and_use_parts_per_million() {
    use ambit_common::config::Duration;
    assert_eq!(super::ms(Duration::parse("10s").unwrap()), 10_000);
    assert_eq!(super::ms(Duration::parse("100us").unwrap()), 1, "never 0 (none) for a short duration");
    assert_eq!(super::ms(Duration::parse("0s").unwrap()), 0);
    let percent = |yaml_value: f64| {
        let vs = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: m, namespace: shop}}\n\
             spec:\n  hosts: [cart]\n  http:\n  - route: [{{destination: {{host: cart}}}}]\n    \
             mirror: {{host: cart}}\n    mirrorPercentage: {{value: {yaml_value}}}\n"
        );
        let resources = compiled(&vs);
        let ambit_common::api::v1::http_route::Action::Forward(f) = cart_http(&resources)[0].action.clone().unwrap()
        else {
            panic!()
        };
        f.mirrors.first().map(|m| m.per_million)
    };
    assert_eq!(percent(0.1), Some(1_000));
    assert_eq!(percent(0.29), Some(2_900), "rounded, not truncated");
    assert_eq!(percent(100.0), Some(1_000_000));
    assert_eq!(percent(0.0), None, "a 0 % mirror is left out, as Istio does");
}

#[test]
fn every_waypoint_gets_an_entry_and_output_is_deterministic() {
    let other = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: idle, namespace: shop}\n\
                 spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n\
                 ---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: ingress, namespace: shop}\n\
                 spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}\n";
    let snapshot = snapshot(&format!("{SHOP}---\n{other}"));
    let first = compile(&snapshot, &MeshConfig::default());
    let names: Vec<_> = first.keys().map(|k| format!("{}/{}", k.namespace, k.name)).collect();
    assert_eq!(names, ["shop/idle", "shop/waypoint"], "only istio-waypoint Gateways");
    assert!(first.values().next().unwrap().is_empty(), "no service uses shop/idle");
    assert_eq!(first, compile(&snapshot, &MeshConfig::default()));
    let resource_names: Vec<_> = first.values().nth(1).unwrap().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(resource_names, [CART, "cart.shop.svc.cluster.local|8080|", "cart.shop.svc.cluster.local|9090|"]);
}
