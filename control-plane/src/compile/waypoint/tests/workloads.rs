//! `BoundWorkload`s: the pods a waypoint for `workload`/`all` serves, exactly those node proxies
//! send to it.

use ambit_common::api::v1::{BoundWorkload, EndpointTransport, Resource, Workload, resource::Kind};

use super::{SHOP, compile, snapshot};
use crate::compile::MeshConfig;

/// `SHOP` (namespace `shop` labelled `use-waypoint: waypoint`, pods `cart-v1`/`cart-v2`) with
/// the waypoint's `istio.io/waypoint-for` set to `waypoint_for`, plus `extra`.
fn shop_for(waypoint_for: &str, extra: &str) -> String {
    let labelled = SHOP.replacen(
        "metadata: {name: waypoint, namespace: shop}",
        &format!("metadata: {{name: waypoint, namespace: shop, labels: {{istio.io/waypoint-for: {waypoint_for}}}}}"),
        1,
    );
    assert_ne!(labelled, SHOP, "SHOP's Gateway metadata changed; update this helper");
    format!("{labelled}---\n{extra}")
}

fn bound(resources: &[Resource]) -> Vec<(&str, &BoundWorkload)> {
    resources
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::BoundWorkload(w)) => Some((r.name.as_str(), w)),
            _ => None,
        })
        .collect()
}

fn waypoint_resources(yaml: &str) -> Vec<Resource> {
    let all = compile(&snapshot(yaml), &MeshConfig::default());
    all.into_iter().find(|(k, _)| k.namespace == "shop" && k.name == "waypoint").expect("shop/waypoint").1
}

/// A pod outside the mesh (its namespace is not enrolled) labelled to use `shop/waypoint`, and
/// the waypoint's own pod.
const EXTRA: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: Pod
metadata:
  name: old
  namespace: legacy
  uid: uid-old
  labels: {istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop}
spec: {nodeName: node-3, serviceAccountName: default}
status: {phase: Running, podIP: 10.1.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-0, namespace: shop, uid: uid-wp, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {nodeName: node-1, serviceAccountName: waypoint}
status: {phase: Running, podIP: 10.1.0.100}
";

#[test]
fn a_waypoint_for_workloads_gets_one_bound_workload_per_pod_in_uid_order() {
    let resources = waypoint_resources(&shop_for("workload", EXTRA));
    let names: Vec<_> = bound(&resources).iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["uid-cart-v1", "uid-cart-v2", "uid-old"], "the waypoint's own pod is never bound");
    let (_, v1) = bound(&resources)[0];
    assert_eq!(
        *v1,
        BoundWorkload {
            uid: "uid-cart-v1".into(),
            namespace: "shop".into(),
            name: "cart-v1".into(),
            addresses: vec![vec![10, 1, 0, 1]],
            identity: "spiffe://cluster.local/ns/shop/sa/cart".into(),
            transport: EndpointTransport::Hbone.into(),
            node: "node-1".into(),
        }
    );
    let (_, old) = bound(&resources)[2];
    assert_eq!(
        (old.identity.as_str(), old.transport()),
        ("", EndpointTransport::Plaintext),
        "a pod outside the mesh has no identity to expect and is reached in plaintext"
    );
    assert!(
        !resources.iter().any(|r| matches!(r.kind, Some(Kind::RouteTable(_)))),
        "a waypoint for workloads only serves no service"
    );
}

#[test]
fn only_waypoints_for_workload_or_all_traffic_get_bound_workloads() {
    for (waypoint_for, expected) in [("service", 0), ("workload", 3), ("all", 3)] {
        let resources = waypoint_resources(&shop_for(waypoint_for, EXTRA));
        assert_eq!(bound(&resources).len(), expected, "waypoint-for {waypoint_for}");
    }
    assert!(bound(&waypoint_resources(&format!("{SHOP}---\n{EXTRA}"))).is_empty(), "the default is `service`");
}

#[test]
fn bound_workloads_are_exactly_the_workloads_node_proxies_send_to_the_waypoint() {
    let opted_out = "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, namespace: shop, uid: uid-solo, \
                     labels: {istio.io/use-waypoint: none}}\nspec: {nodeName: node-1}\nstatus: {phase: Running, podIP: 10.1.0.7}\n";
    let yaml = shop_for("all", &format!("{EXTRA}---\n{opted_out}"));
    let compiled = crate::compile::compile(&snapshot(&yaml), &MeshConfig::default());
    let sent: Vec<&Workload> = compiled
        .shared
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Workload(w)) if w.waypoint == "shop/waypoint" => Some(w),
            _ => None,
        })
        .collect();
    let resources = waypoint_resources(&yaml);
    let served = bound(&resources);
    let mut sent_uids: Vec<_> = sent.iter().map(|w| w.uid.as_str()).collect();
    sent_uids.sort_unstable();
    assert_eq!(served.iter().map(|(n, _)| *n).collect::<Vec<_>>(), sent_uids);
    assert!(!sent_uids.contains(&"uid-solo"), "`use-waypoint: none` opts the pod out on both sides");
    for (workload, (_, bound)) in sent.iter().zip(&served) {
        assert_eq!(workload.addresses, bound.addresses, "{}", workload.uid);
    }
}

#[test]
fn a_pod_without_uid_is_named_as_its_workload_is() {
    let nameless = "apiVersion: v1\nkind: Pod\nmetadata: {name: hand, namespace: shop}\n\
                    spec: {nodeName: node-1, serviceAccountName: hand}\nstatus: {phase: Running, podIP: 10.1.0.8}\n";
    let resources = waypoint_resources(&shop_for("workload", nameless));
    let names: Vec<_> = bound(&resources).iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["shop/hand", "uid-cart-v1", "uid-cart-v2"]);
}
