//! Waypoints as node proxies see them: `Waypoint` resources and their instances, waypoint pods
//! never captured, and the implicit "allow from the waypoint" policy.

use ambit_common::api::v1::{self as api, AuthorizationAction, resource::Kind, string_match::Kind as Match};

use super::{
    authorization as authorization_of,
    authorization::{ALLOW_ALL, policy, selector},
    compiled, gateway, namespace, pod,
    service::{k8s_service, slice},
    workload,
};
use crate::compile::node::NodeResources;

const AMBIENT: &str = "istio.io/dataplane-mode: ambient";

/// A pod of Gateway `gateway` with service account `sa` and the given phase.
fn gateway_pod(namespace: &str, name: &str, ip: &str, gateway: &str, sa: &str, phase: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  uid: uid-{name}
  labels: {{gateway.networking.k8s.io/gateway-name: {gateway}}}
spec: {{nodeName: node-1, serviceAccountName: {sa}}}
status: {{phase: {phase}, podIP: {ip}}}
---
"
    )
}

fn ingress(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  gatewayClassName: istio\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n---\n"
    )
}

fn waypoint_resource<'o>(out: &'o NodeResources, name: &str) -> Option<&'o api::Waypoint> {
    out.shared.iter().find(|r| r.name == name).and_then(|r| match &r.kind {
        Some(Kind::Waypoint(w)) => Some(w),
        _ => None,
    })
}

fn waypoint_names(out: &NodeResources) -> Vec<&str> {
    out.shared.iter().filter(|r| matches!(r.kind, Some(Kind::Waypoint(_)))).map(|r| r.name.as_str()).collect()
}

#[test]
fn one_waypoint_resource_per_waypoint_gateway_with_its_running_pods() {
    let yaml = [
        namespace("shop", AMBIENT),
        namespace("bank", ""),
        gateway("shop", "wp", None),
        gateway("shop", "idle", Some("all")),
        gateway("bank", "wp", None),
        ingress("shop", "public"),
        gateway_pod("shop", "wp-b", "10.0.0.2", "wp", "waypoint", "Running"),
        gateway_pod("shop", "wp-a", "10.0.0.1", "wp", "waypoint", "Running"),
        gateway_pod("shop", "wp-starting", "10.0.0.3", "wp", "waypoint", "Pending"),
        gateway_pod("shop", "wp-done", "10.0.0.4", "wp", "waypoint", "Succeeded"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: wp-unscheduled, namespace: shop, \
         labels: {gateway.networking.k8s.io/gateway-name: wp}}\nspec: {}\nstatus: {phase: Running}\n---\n"
            .to_string(),
        gateway_pod("bank", "wp-x", "10.0.0.5", "wp", "bank-waypoint", "Running"),
        gateway_pod("shop", "public-1", "10.0.0.6", "public", "ingress", "Running"),
        pod("shop", "web", "10.0.0.7", "app: web"),
    ]
    .concat();
    let out = compiled(&yaml);
    assert_eq!(waypoint_names(&out), ["bank/wp", "shop/idle", "shop/wp"], "no resource for the ingress Gateway");
    let shop = waypoint_resource(&out, "shop/wp").unwrap();
    assert_eq!((shop.namespace.as_str(), shop.name.as_str()), ("shop", "wp"));
    assert_eq!(
        shop.workload_uids,
        ["uid-wp-a", "uid-wp-b"],
        "running pods with an address, sorted; not another namespace's"
    );
    assert_eq!(waypoint_resource(&out, "bank/wp").unwrap().workload_uids, ["uid-wp-x"]);
    assert!(waypoint_resource(&out, "shop/idle").unwrap().workload_uids.is_empty(), "a waypoint without pods");
    let last: Vec<&str> = out.shared.iter().rev().take(3).map(|r| r.name.as_str()).collect();
    assert_eq!(last, ["shop/wp", "shop/idle", "bank/wp"], "waypoints come last, after services");
}

#[test]
fn waypoint_pods_are_never_captured() {
    let yaml = [
        namespace("shop", AMBIENT),
        gateway("shop", "wp", None),
        ingress("shop", "public"),
        gateway_pod("shop", "wp-1", "10.0.0.1", "wp", "waypoint", "Running"),
        pod("shop", "wp-2", "10.0.0.2", &format!("gateway.networking.k8s.io/gateway-name: wp, {AMBIENT}")),
        pod("shop", "managed", "10.0.0.3", "gateway.istio.io/managed: istio.io-mesh-controller"),
        gateway_pod("shop", "public-1", "10.0.0.4", "public", "ingress", "Running"),
        gateway_pod("shop", "orphan", "10.0.0.5", "gone", "x", "Running"),
    ]
    .concat();
    let out = compiled(&yaml);
    assert!(!workload(&out, "wp-1").captured, "in an ambient namespace");
    assert!(!workload(&out, "wp-2").captured, "even labelled ambient itself");
    assert!(!workload(&out, "managed").captured, "istiod's managed label");
    assert!(workload(&out, "public-1").captured, "another Gateway's pods follow the usual rules");
    assert!(workload(&out, "orphan").captured, "a Gateway that does not exist is no waypoint");
}

/// shop: a waypoint `wp` for all traffic (two pods, one service account), a workload waypoint
/// `wwp` (no pods), and pods bound to them in every way.
fn bound_cluster(policies: &[String]) -> NodeResources {
    let ports = "[{name: http, port: 80, targetPort: 8080}]";
    let endpoints = |uid: &str, ip: &str| format!("[{{addresses: [{ip}], targetRef: {{kind: Pod, name: {uid}}}}}]");
    let mut yaml = vec![
        namespace("shop", AMBIENT),
        namespace("istio-system", ""),
        gateway("shop", "wp", Some("all")),
        gateway("shop", "wwp", Some("workload")),
        gateway_pod("shop", "wp-1", "10.0.1.1", "wp", "waypoint", "Running"),
        gateway_pod("shop", "wp-2", "10.0.1.2", "wp", "waypoint", "Running"),
        pod("shop", "reviews", "10.0.0.1", "app: reviews"),
        pod("shop", "direct", "10.0.0.2", "app: direct, istio.io/use-waypoint: wp"),
        pod("shop", "direct-idle", "10.0.0.3", "app: direct, istio.io/use-waypoint: wwp"),
        pod("shop", "loner", "10.0.0.4", "app: loner"),
        k8s_service("shop", "reviews", "istio.io/use-waypoint: wp", "10.96.0.1", ports),
        slice("shop", "reviews-1", "reviews", "[{name: http, port: 8080}]", &endpoints("reviews", "10.0.0.1")),
    ];
    yaml.extend(policies.iter().cloned());
    compiled(&yaml.concat())
}

const IMPLICIT: &str = "shop/istio_allow_waypoint_shop_wp";

#[test]
fn the_implicit_waypoint_policy_admits_the_waypoints_service_accounts() {
    let out = bound_cluster(&[]);
    let a = authorization_of(&out, IMPLICIT);
    assert_eq!((a.name.as_str(), a.namespace.as_str()), ("istio_allow_waypoint_shop_wp", "shop"));
    assert_eq!((a.action, a.has_l7), (AuthorizationAction::Allow as i32, false));
    let exact = |s: &str| api::StringMatch { kind: Some(Match::Exact(s.into())) };
    let expected = api::AuthorizationRule {
        from: vec![api::Source { principals: vec![exact("cluster.local/ns/shop/sa/waypoint")], ..Default::default() }],
        ..Default::default()
    };
    assert_eq!(a.rules, [expected], "one principal per service account, without spiffe://");
    assert!(
        !out.authorizations.keys().any(|k| k.contains("wwp")),
        "a waypoint without instances has no identity to admit"
    );
}

#[test]
fn bound_workloads_with_an_allow_policy_reference_the_implicit_policy() {
    let out = bound_cluster(&[policy("shop", "only-sleep", "", "  rules: [{from: [{source: {principals: [x]}}]}]\n")]);
    let names = |pod: &str| workload(&out, pod).authorization_policies.clone();
    assert_eq!(
        (workload(&out, "reviews").waypoint.as_str(), workload(&out, "direct").waypoint.as_str()),
        ("", "shop/wp")
    );
    assert_eq!(names("reviews"), [IMPLICIT, "shop/only-sleep"], "an endpoint of a bound service");
    assert_eq!(names("direct"), [IMPLICIT, "shop/only-sleep"], "bound through its own label");
    assert_eq!(names("direct-idle"), ["shop/only-sleep"], "its waypoint has no instance, so no implicit policy");
    assert_eq!(names("loner"), ["shop/only-sleep"], "not bound to a waypoint");
    assert_eq!(names("wp-1"), ["shop/only-sleep"], "the waypoint's own pods are bound to nothing");
}

#[test]
fn without_an_allow_policy_nothing_is_added() {
    let deny = policy("shop", "no-bank", "", "  action: DENY\n  rules: [{from: [{source: {namespaces: [bank]}}]}]\n");
    let out = bound_cluster(&[deny]);
    assert_eq!(
        workload(&out, "reviews").authorization_policies,
        ["shop/no-bank"],
        "DENY only: the default still allows"
    );
    let out = bound_cluster(&[policy("istio-system", "mesh-reviews", &selector("app: reviews"), ALLOW_ALL)]);
    assert_eq!(
        workload(&out, "reviews").authorization_policies,
        ["istio-system/mesh-reviews", IMPLICIT],
        "a mesh-wide ALLOW selecting the workload counts"
    );
    assert_eq!(workload(&out, "direct").authorization_policies, Vec::<String>::new());
}
