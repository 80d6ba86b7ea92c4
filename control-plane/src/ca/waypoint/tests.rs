use ambit_common::config::{ConfigStore, parse_documents};

use super::*;
use crate::ca::{
    authn::Claim,
    authz::{Caller, authorize, resolve_caller},
};

/// A waypoint `shop/waypoint` (two pods), a Gateway of another class, and pods of each.
const CLUSTER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-a, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {nodeName: node-0, serviceAccountName: waypoint, containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: waypoint-b, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
spec: {nodeName: node-1, serviceAccountName: EXTRA_SA, containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ingress-a, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: ingress}}
spec: {nodeName: node-0, serviceAccountName: ingress, containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: orphan-a, namespace: shop, labels: {gateway.networking.k8s.io/gateway-name: gone}}
spec: {nodeName: node-0, serviceAccountName: orphan, containers: [{name: istio-proxy}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-a, namespace: shop}
spec: {nodeName: node-0, serviceAccountName: cart, containers: [{name: cart}]}
"#;

/// The cluster, with the second waypoint pod's service account `second_sa`.
fn cluster(second_sa: &str) -> Snapshot {
    let outcome = parse_documents(&CLUSTER.replace("EXTRA_SA", second_sa), "cluster.yaml");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    ConfigStore::new().apply(outcome)
}

fn entry(namespace: &str, name: &str) -> Claim {
    Claim::Waypoint(WaypointName { namespace: namespace.into(), name: name.into() })
}

fn pod(name: &str, service_account: &str) -> Claim {
    Claim::WorkloadPod {
        namespace: "shop".into(),
        name: name.into(),
        uid: None,
        service_account: service_account.into(),
    }
}

fn ask(claim: Claim, identity: &str, snapshot: &Snapshot) -> Result<String, String> {
    let caller = resolve_caller(claim, snapshot).map_err(|e| e.to_string())?;
    let authorized = authorize(&caller, identity, "cluster.local", snapshot).map_err(|e| e.to_string())?;
    Ok(format!("{} for {}", authorized.id(), authorized.requester()))
}

#[test]
fn a_waypoint_entry_gets_its_pods_service_account_only() {
    let snapshot = cluster("waypoint");
    assert_eq!(
        ask(entry("shop", "waypoint"), "spiffe://cluster.local/ns/shop/sa/waypoint", &snapshot).unwrap(),
        "spiffe://cluster.local/ns/shop/sa/waypoint for waypoint/shop/waypoint"
    );
    let refused = ask(entry("shop", "waypoint"), "spiffe://cluster.local/ns/shop/sa/cart", &snapshot).unwrap_err();
    assert_eq!(
        refused,
        "waypoint shop/waypoint asked for spiffe://cluster.local/ns/shop/sa/cart, but a waypoint may have only its \
         own service account's identity, spiffe://cluster.local/ns/shop/sa/waypoint"
    );
    let refused = ask(entry("bank", "waypoint"), "spiffe://cluster.local/ns/shop/sa/waypoint", &snapshot).unwrap_err();
    assert!(refused.contains("no pod in namespace bank is labelled gateway.networking.k8s.io/gateway-name: waypoint"));
}

#[test]
fn waypoint_pods_that_disagree_on_their_service_account_are_refused() {
    let refused =
        ask(entry("shop", "waypoint"), "spiffe://cluster.local/ns/shop/sa/waypoint", &cluster("other")).unwrap_err();
    assert_eq!(
        refused,
        "waypoint shop/waypoint asked for spiffe://cluster.local/ns/shop/sa/waypoint, but its own service account \
         cannot be established: its pods run as different service accounts (other, waypoint): give every pod of \
         the waypoint the same one"
    );
}

#[test]
fn a_pod_bound_token_is_a_waypoint_only_if_its_pod_and_gateway_are() {
    let snapshot = cluster("waypoint");
    let caller = resolve_caller(pod("waypoint-b", "waypoint"), &snapshot).unwrap();
    let Caller::Waypoint(waypoint) = &caller else { panic!("{caller:?}") };
    assert_eq!(waypoint.name().to_string(), "shop/waypoint");
    // Its own service account is the token's, whatever its fellow pods run as.
    assert!(ask(pod("waypoint-b", "waypoint"), "spiffe://cluster.local/ns/shop/sa/waypoint", &cluster("x")).is_ok());
    let refused = ask(pod("waypoint-b", "waypoint"), "spiffe://cluster.local/ns/shop/sa/cart", &snapshot).unwrap_err();
    assert!(refused.contains("may have only its own service account's identity"), "{refused}");

    for (name, sa, why) in [
        ("cart-a", "cart", "it has no gateway.networking.k8s.io/gateway-name label"),
        ("ingress-a", "ingress", "its Gateway shop/ingress is of class \"istio\", not \"istio-waypoint\""),
        ("orphan-a", "orphan", "its Gateway shop/gone is not in the configuration"),
    ] {
        let refused = resolve_caller(pod(name, sa), &snapshot).unwrap_err();
        assert!(matches!(refused, AuthzError::NotAWaypoint { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(message.starts_with(&format!("the token of service account shop/{sa} is bound to pod shop/{name}")));
        assert!(message.contains(why), "{message}");
    }
    let unknown = resolve_caller(pod("deleted-a", "waypoint"), &snapshot).unwrap_err();
    assert!(matches!(unknown, AuthzError::UnknownBoundPod { .. }), "{unknown:?}");
    let not_ready = resolve_caller(pod("waypoint-a", "waypoint"), &Snapshot::default()).unwrap_err();
    assert_eq!(not_ready, AuthzError::NotReady);
}
