//! Unit tests on small snapshots written as YAML, one module per concern.

mod authorization;
mod mtls;
mod service;
mod waypoint;
mod workload;

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::{ConfigStore, Snapshot, parse_documents},
};

use super::{MeshConfig, NodeResources, compile};

/// A snapshot of `yaml`, which must load without a single error.
fn snapshot(yaml: &str) -> Snapshot {
    let outcome = parse_documents(yaml, "test.yaml");
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    let mut store = ConfigStore::new();
    let snapshot = store.apply(outcome);
    assert!(store.rejections().is_empty(), "{:#?}", store.rejections());
    snapshot
}

fn compiled(yaml: &str) -> NodeResources {
    compile(&snapshot(yaml), &MeshConfig::default())
}

fn workloads(out: &NodeResources) -> impl Iterator<Item = &api::Workload> {
    out.shared.iter().filter_map(|r| match &r.kind {
        Some(Kind::Workload(w)) => Some(w),
        _ => None,
    })
}

/// The workload of the pod named `name`.
fn workload<'o>(out: &'o NodeResources, name: &str) -> &'o api::Workload {
    workloads(out).find(|w| w.name == name).unwrap_or_else(|| panic!("no workload {name}"))
}

/// The service resource named `name` (`<namespace>/<name>`).
fn service<'o>(out: &'o NodeResources, name: &str) -> &'o api::Service {
    match out.shared.iter().find(|r| r.name == name).and_then(|r| r.kind.as_ref()) {
        Some(Kind::Service(s)) => s,
        other => panic!("no service {name}: {other:?}"),
    }
}

fn authorization<'o>(out: &'o NodeResources, name: &str) -> &'o api::Authorization {
    match out.authorizations.get(name).and_then(|r: &Resource| r.kind.as_ref()) {
        Some(Kind::Authorization(a)) => a,
        other => panic!("no authorization {name}: {other:?}"),
    }
}

fn ip(bytes: &[u8]) -> std::net::IpAddr {
    match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap()),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap()),
        n => panic!("{n}-byte address"),
    }
}

/// A namespace document; `labels` is YAML flow-map content, e.g. `istio.io/dataplane-mode: ambient`.
fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n---\n")
}

/// A running pod document with one container port 8080 named `http`.
fn pod(namespace: &str, name: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  uid: uid-{name}
  labels: {{{labels}}}
spec:
  nodeName: node-1
  serviceAccountName: sa-{name}
  containers:
  - name: app
    ports:
    - {{name: http, containerPort: 8080}}
status:
  phase: Running
  podIP: {ip}
---
"
    )
}

/// A waypoint Gateway; `waypoint_for` sets its `istio.io/waypoint-for` label.
fn gateway(namespace: &str, name: &str, waypoint_for: Option<&str>) -> String {
    let labels = waypoint_for.map(|w| format!("istio.io/waypoint-for: {w}")).unwrap_or_default();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{labels}}}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {{name: mesh, port: 15008, protocol: HBONE}}
---
"
    )
}

#[test]
fn output_is_sorted_by_type_then_name() {
    let yaml = [
        namespace("b", ""),
        namespace("a", ""),
        pod("a", "z", "10.0.0.2", ""),
        pod("a", "y", "10.0.0.1", ""),
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n"
            .to_string(),
    ]
    .concat();
    let out = compiled(&yaml);
    let order: Vec<(&str, &str)> = out
        .shared
        .iter()
        .map(|r| {
            let kind = match r.kind {
                Some(Kind::Namespace(_)) => "ns",
                Some(Kind::Workload(_)) => "workload",
                Some(Kind::Service(_)) => "service",
                _ => "other",
            };
            (kind, r.name.as_str())
        })
        .collect();
    assert_eq!(order, [("ns", "a"), ("ns", "b"), ("workload", "uid-y"), ("workload", "uid-z"), ("service", "a/s")]);
    let again = compiled(&yaml);
    assert_eq!(out.shared, again.shared);
}

#[test]
fn namespaces_carry_their_labels() {
    let out = compiled(&namespace("shop", "team: blue, istio.io/dataplane-mode: ambient"));
    let Some(Kind::Namespace(ns)) = &out.shared[0].kind else { panic!() };
    assert_eq!((out.shared[0].name.as_str(), ns.name.as_str()), ("shop", "shop"));
    assert_eq!(ns.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(ns.labels.len(), 2);
}
