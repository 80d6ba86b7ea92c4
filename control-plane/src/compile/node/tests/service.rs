//! Services and ServiceEntries: VIPs, ports, endpoints and their workloads, waypoints.

use std::collections::BTreeMap;

use ambit_common::config::model::Protocol;

use super::{compiled, gateway, ip, namespace, pod, service};
use crate::compile::node::service::app_protocol;

pub(super) fn k8s_service(namespace: &str, name: &str, labels: &str, cluster_ip: &str, ports: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\n\
         spec:\n  clusterIP: {cluster_ip}\n  selector: {{app: {name}}}\n  ports: {ports}\n---\n"
    )
}

/// `endpoints` and `ports` are YAML flow sequences.
pub(super) fn slice(namespace: &str, name: &str, service: &str, ports: &str, endpoints: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}, namespace: {namespace}, labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nports: {ports}\nendpoints: {endpoints}\n---\n"
    )
}

#[test]
fn service_fields_ports_and_protocols() {
    let ports = "[{name: http-web, port: 80, targetPort: 8080}, {name: grpc, port: 90, targetPort: grpc-port, appProtocol: grpc}, \
                 {name: metrics, port: 91}, {name: dns, port: 53, protocol: UDP}]";
    let out = compiled(&k8s_service("shop", "web", "", "10.96.0.10", ports));
    let s = service(&out, "shop/web");
    assert_eq!((s.name.as_str(), s.namespace.as_str()), ("web", "shop"));
    assert_eq!(s.hostname, "web.shop.svc.cluster.local");
    assert_eq!(s.vips.iter().map(|v| ip(v)).collect::<Vec<_>>(), ["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]);
    let ports: Vec<_> =
        s.ports.iter().map(|p| (p.port, p.target_port, p.name.as_str(), p.app_protocol.as_str())).collect();
    assert_eq!(
        ports,
        [(80, 8080, "http-web", "http"), (90, 0, "grpc", "grpc"), (91, 91, "metrics", ""), (53, 53, "dns", "udp")]
    );
    assert!(s.endpoints.is_empty());
}

#[test]
fn app_protocol_follows_istio() {
    let tcp = Protocol::Tcp;
    assert_eq!(app_protocol(tcp, Some("kubernetes.io/h2c"), Some("tcp-x")), "http2", "appProtocol wins over the name");
    assert_eq!(app_protocol(tcp, Some("HTTPS"), None), "https");
    assert_eq!(app_protocol(tcp, None, Some("grpc-web-ui")), "grpc-web");
    assert_eq!(app_protocol(tcp, None, Some("tls-passthrough")), "tls");
    assert_eq!(app_protocol(tcp, None, Some("TCP")), "tcp");
    assert_eq!(app_protocol(tcp, None, Some("http2")), "http2");
    assert_eq!(app_protocol(tcp, None, Some("httpx-foo")), "");
    assert_eq!(app_protocol(tcp, None, None), "");
    assert_eq!(app_protocol(Protocol::Udp, Some("http"), None), "udp");
}

#[test]
fn endpoints_find_their_workloads() {
    let endpoints = "[
      {addresses: [10.0.0.1], targetRef: {kind: Pod, name: web-1, namespace: shop, uid: uid-web-1}},
      {addresses: [10.0.0.2], targetRef: {kind: Pod, name: web-2}},
      {addresses: [10.0.0.3], conditions: {ready: false}},
      {addresses: [10.9.9.9]}]";
    let yaml = [
        pod("shop", "web-1", "10.0.0.1", "app: web"),
        pod("shop", "web-2", "10.0.0.2", "app: web"),
        pod("shop", "web-3", "10.0.0.3", "app: web"),
        k8s_service("shop", "web", "", "10.96.0.10", "[{name: http, port: 80, targetPort: 8080}]"),
        slice("shop", "web-abc", "web", "[{name: http, port: 8080}]", endpoints),
        slice("other", "web-x", "web", "[{name: http, port: 1}]", "[{addresses: [10.1.1.1]}]"),
    ]
    .concat();
    let out = compiled(&yaml);
    let eps: Vec<_> = service(&out, "shop/web")
        .endpoints
        .iter()
        .map(|e| (e.workload_uid.as_str(), ip(&e.address).to_string(), e.ports.clone(), e.ready))
        .collect();
    let port = BTreeMap::from([(80, 8080)]);
    assert_eq!(
        eps,
        [
            ("uid-web-1", "10.0.0.1".into(), port.clone(), true),
            ("uid-web-2", "10.0.0.2".into(), port.clone(), true),
            ("uid-web-3", "10.0.0.3".into(), port.clone(), false),
            ("", "10.9.9.9".into(), port, true),
        ]
    );
}

#[test]
fn named_target_ports_resolve_per_endpoint() {
    let ports = "[{name: main, port: 80, targetPort: web}, {name: admin, port: 81, targetPort: admin-port}, \
                 {name: extra, port: 82, targetPort: http}]";
    let yaml = [
        pod("shop", "web-1", "10.0.0.1", ""),
        k8s_service("shop", "web", "", "10.96.0.10", ports),
        // `main` resolves the controller's way (the slice port named after the service port),
        // `admin` by its target port's name; `extra` through the pod's container port `http`.
        slice(
            "shop",
            "web-abc",
            "web",
            "[{name: main, port: 9000}, {name: admin-port, port: 9001}]",
            "[{addresses: [10.0.0.1]}]",
        ),
    ]
    .concat();
    let out = compiled(&yaml);
    let s = service(&out, "shop/web");
    assert!(s.ports.iter().all(|p| p.target_port == 0));
    assert_eq!(s.endpoints[0].ports, BTreeMap::from([(80, 9000), (81, 9001), (82, 8080)]));
}

#[test]
fn headless_services_have_no_vip() {
    let yaml = [
        pod("shop", "db-0", "10.0.0.5", ""),
        k8s_service("shop", "db", "", "None", "[{name: tcp-db, port: 5432}]"),
        slice("shop", "db-abc", "db", "[{name: tcp-db, port: 5432}]", "[{addresses: [10.0.0.5]}]"),
    ]
    .concat();
    let out = compiled(&yaml);
    let s = service(&out, "shop/db");
    assert!(s.vips.is_empty());
    assert_eq!(s.endpoints[0].workload_uid, "uid-db-0");
    assert_eq!(s.ports[0].app_protocol, "tcp");
}

#[test]
fn service_waypoints() {
    let ports = "[{port: 80}]";
    let yaml = [
        namespace("shop", "istio.io/use-waypoint: wp"),
        namespace("plain", ""),
        gateway("shop", "wp", None),
        gateway("shop", "own", Some("all")),
        gateway("shop", "workload-only", Some("workload")),
        k8s_service("shop", "ns", "", "10.96.0.1", ports),
        k8s_service("shop", "opt-out", "istio.io/use-waypoint: none", "10.96.0.2", ports),
        k8s_service("shop", "own", "istio.io/use-waypoint: own", "10.96.0.3", ports),
        k8s_service("shop", "wrong-kind", "istio.io/use-waypoint: workload-only", "10.96.0.4", ports),
        k8s_service("shop", "wp", "gateway.istio.io/managed: istio.io-mesh-controller", "10.96.0.5", ports),
        k8s_service(
            "plain",
            "far",
            "istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: shop",
            "10.96.0.6",
            ports,
        ),
        k8s_service("plain", "none", "", "10.96.0.7", ports),
    ]
    .concat();
    let out = compiled(&yaml);
    let wp = |name: &str| service(&out, name).waypoint.clone();
    assert_eq!(wp("shop/ns"), "shop/wp", "the namespace label");
    assert_eq!(wp("shop/opt-out"), "");
    assert_eq!(wp("shop/own"), "shop/own", "the service label wins");
    assert_eq!(wp("shop/wrong-kind"), "", "a workload-only waypoint takes no service traffic");
    assert_eq!(wp("shop/wp"), "", "a waypoint's own service");
    assert_eq!(wp("plain/far"), "shop/wp");
    assert_eq!(wp("plain/none"), "");
}

const SERVICE_ENTRY: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop, labels: {istio.io/use-waypoint: wp}}
spec:
  hosts: [api.example.com, www.example.com]
  addresses: [240.0.0.1, 240.1.0.0/16]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 443, name: https, protocol: TLS}
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  endpoints:
  - {address: 203.0.113.7}
  - {address: 203.0.113.8, ports: {https: 8443}}
---
";

#[test]
fn service_entries_make_one_service_per_host() {
    let out = compiled(&[gateway("shop", "wp", None), SERVICE_ENTRY.to_string()].concat());
    for host in ["api.example.com", "www.example.com"] {
        let s = service(&out, &format!("shop/ext/{host}"));
        assert_eq!((s.name.as_str(), s.namespace.as_str(), s.hostname.as_str()), ("ext", "shop", host));
        assert_eq!(s.vips.iter().map(|v| ip(v).to_string()).collect::<Vec<_>>(), ["240.0.0.1"], "CIDRs are skipped");
        let ports: Vec<_> = s.ports.iter().map(|p| (p.port, p.target_port, p.app_protocol.as_str())).collect();
        assert_eq!(ports, [(443, 443, "tls"), (80, 8080, "http")]);
        let eps: Vec<_> = s.endpoints.iter().map(|e| (ip(&e.address).to_string(), e.ports.clone(), e.ready)).collect();
        assert_eq!(
            eps,
            [
                ("203.0.113.7".to_string(), BTreeMap::from([(443, 443), (80, 8080)]), true),
                ("203.0.113.8".to_string(), BTreeMap::from([(443, 8443), (80, 8080)]), true),
            ]
        );
        assert_eq!(s.waypoint, "shop/wp");
    }
}

#[test]
fn service_entries_select_workloads() {
    let se = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: shop}
spec:
  hosts: [legacy.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, targetPort: 8080}]
  workloadSelector: {labels: {app: legacy}}
---
";
    let yaml = [
        pod("shop", "legacy-1", "10.0.0.1", "app: legacy"),
        pod("shop", "other", "10.0.0.2", "app: other"),
        pod("bank", "legacy-2", "10.0.0.3", "app: legacy"),
        se.to_string(),
    ]
    .concat();
    let out = compiled(&yaml);
    let s = service(&out, "shop/legacy/legacy.internal");
    let eps: Vec<_> = s.endpoints.iter().map(|e| (e.workload_uid.as_str(), e.ports.clone(), e.ready)).collect();
    assert_eq!(eps, [("uid-legacy-1", BTreeMap::from([(80, 8080)]), true)]);
}
