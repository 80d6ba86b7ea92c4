//! `targetRefs` AuthorizationPolicies reaching waypoints as `HttpAuthorization`s.

use ambit_common::api::v1::{
    AuthorizationAction, HttpAuthorization, HttpConditionKey, Resource, StringMatch, resource::Kind, string_match,
};

use super::{CART, SHOP, compile, compiled_for, snapshot};
use crate::compile::{MeshConfig, WaypointKey};

/// A second waypoint `shop/pay-waypoint` serving the `pay` Service and the ServiceEntry `ext`;
/// a namespace `plain` with a Service `lonely` bound to no waypoint.
const MORE: &str = r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: pay-waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: pay, namespace: shop, labels: {istio.io/use-waypoint: pay-waypoint}}
spec:
  clusterIP: 10.96.0.20
  selector: {app: pay}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop, labels: {istio.io/use-waypoint: pay-waypoint}}
spec:
  hosts: [api.example.com, www.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: plain}
spec:
  clusterIP: 10.96.0.30
  selector: {app: lonely}
  ports: [{name: http, port: 80}]
";

fn policy(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n{spec}\n"
    )
}

fn authorizations(resources: &[Resource]) -> Vec<(&str, &HttpAuthorization)> {
    resources
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::HttpAuthorization(a)) => Some((r.name.as_str(), a)),
            _ => None,
        })
        .collect()
}

/// Every waypoint's authorization names, as `<waypoint>: <policy>` lines.
fn placement(policies: &str) -> Vec<String> {
    let all = compile(&snapshot(&format!("{SHOP}---\n{MORE}---\n{policies}")), &MeshConfig::default());
    all.iter()
        .flat_map(|(WaypointKey { namespace, name }, resources)| {
            authorizations(resources)
                .into_iter()
                .map(move |(policy, a)| format!("{namespace}/{name}: {policy} {:?}", a.hostnames))
        })
        .collect()
}

fn exact(value: &str) -> StringMatch {
    StringMatch { kind: Some(string_match::Kind::Exact(value.into())) }
}

fn one(spec: &str) -> HttpAuthorization {
    let resources = compiled_for(&format!("{MORE}---\n{}", policy("shop", "p", spec)), "shop", "waypoint");
    let found = authorizations(&resources);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].1.clone()
}

const TO_GATEWAY: &str = "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]";

#[test]
fn a_policy_targeting_the_gateway_reaches_that_waypoint_only_for_all_its_traffic() {
    let placed = placement(&policy("shop", "gw", &format!("{TO_GATEWAY}\n  action: DENY\n  rules: [{{}}]")));
    assert_eq!(placed, ["shop/waypoint: shop/gw []"]);
    // The same name in another namespace is another Gateway.
    let elsewhere = policy("plain", "gw", &format!("{TO_GATEWAY}\n  rules: [{{}}]"));
    assert!(placement(&elsewhere).is_empty());
}

#[test]
fn a_policy_targeting_bound_services_gets_their_hostnames() {
    let spec = "  targetRefs:\n  - {kind: Service, group: \"\", name: cart}\n  - {kind: Service, group: \"\", name: pay}\n  \
                - {kind: ServiceEntry, group: networking.istio.io, name: ext}\n  rules: [{}]";
    assert_eq!(
        placement(&policy("shop", "svc", spec)),
        [
            "shop/pay-waypoint: shop/svc [\"api.example.com\", \"pay.shop.svc.cluster.local\", \"www.example.com\"]",
            format!("shop/waypoint: shop/svc [\"{CART}\"]").as_str(),
        ]
    );
}

#[test]
fn policies_for_unbound_services_selectors_or_no_target_reach_no_waypoint() {
    let policies = [
        policy("plain", "unbound", "  targetRefs: [{kind: Service, group: \"\", name: lonely}]\n  rules: [{}]"),
        // A Service named in another namespace than the policy's is not that Service.
        policy("plain", "cart", "  targetRefs: [{kind: Service, group: \"\", name: cart}]\n  rules: [{}]"),
        // Kind must match: `cart` is a Service, not a ServiceEntry.
        policy(
            "shop",
            "kind",
            "  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: cart}]\n  rules: [{}]",
        ),
        policy("shop", "selector", "  selector: {matchLabels: {app: cart}}\n  rules: [{}]"),
        policy("shop", "namespace", "  rules: [{}]"),
        policy("istio-system", "mesh", "  action: DENY\n  rules: [{}]"),
    ];
    assert!(placement(&policies.join("---\n")).is_empty(), "{:?}", placement(&policies.join("---\n")));
}

#[test]
fn output_is_sorted_by_name_after_routes_and_clusters() {
    let policies = [
        policy("shop", "b", &format!("{TO_GATEWAY}\n  rules: [{{}}]")),
        policy("shop", "a", &format!("{TO_GATEWAY}\n  rules: [{{}}]")),
    ];
    let resources = compiled_for(&policies.join("---\n"), "shop", "waypoint");
    let names: Vec<_> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["shop/a", "shop/b"]);
    assert!(matches!(resources[0].kind, Some(Kind::RouteTable(_))));
}

#[test]
fn rules_are_translated_with_istio_value_forms() {
    let a = one(&format!(
        "{TO_GATEWAY}\n  action: ALLOW\n  rules:\n  - from:\n    - source: {{principals: [\"cluster.local/ns/a/sa/*\"], \
         notNamespaces: [\"*-test\"], ipBlocks: [10.0.0.0/8], remoteIpBlocks: [192.0.2.1], requestPrincipals: [\"*\"]}}\n    \
         - source: {{serviceAccounts: [\"front/web\"]}}\n    to:\n    - operation: {{hosts: [\"*.example.com\"], \
         ports: [\"8080\"], methods: [GET], notPaths: [\"/admin*\"]}}\n    when:\n    - {{key: \"request.headers[X-Team]\", \
         values: [blue]}}\n    - {{key: source.ip, notValues: [10.1.2.3]}}\n    - {{key: \"request.auth.claims[iss]\", values: [\"*\"]}}"
    ));
    assert_eq!(a.action, AuthorizationAction::Allow as i32);
    assert!(a.hostnames.is_empty() && a.not_enforced.is_empty());
    let rule = &a.rules[0];
    let prefix = |v: &str| StringMatch { kind: Some(string_match::Kind::Prefix(v.into())) };
    let suffix = |v: &str| StringMatch { kind: Some(string_match::Kind::Suffix(v.into())) };
    assert_eq!(rule.from[0].principals, [prefix("cluster.local/ns/a/sa/")]);
    assert_eq!(rule.from[0].not_namespaces, [suffix("-test")]);
    assert_eq!(rule.from[0].remote_ip_blocks[0].prefix_len, 32);
    assert_eq!(rule.from[0].request_principals, [StringMatch { kind: Some(string_match::Kind::Any(true)) }]);
    assert_eq!(rule.from[1].principals, [suffix("/ns/front/sa/web")], "serviceAccounts as Istio principals");
    assert_eq!(rule.to[0].hosts, [suffix(".example.com")]);
    assert_eq!((rule.to[0].ports.as_slice(), rule.to[0].methods.as_slice()), (&[8080][..], &[exact("GET")][..]));
    assert_eq!(rule.to[0].not_paths, [prefix("/admin")]);
    let keys: Vec<_> = rule.when.iter().map(|c| (c.key(), c.name.as_str())).collect();
    assert_eq!(
        keys,
        [
            (HttpConditionKey::RequestHeader, "x-team"),
            (HttpConditionKey::SourceIp, ""),
            (HttpConditionKey::RequestAuth, "request.auth.claims[iss]")
        ]
    );
    assert_eq!(rule.when[1].not_values, [exact("10.1.2.3/32")]);
}

#[test]
fn unevaluable_keys_fail_closed_and_are_reported() {
    let when = "    when: [{key: connection.sni, values: [a.example.com]}]";
    let allow = one(&format!("{TO_GATEWAY}\n  rules:\n  - to: [{{operation: {{methods: [GET]}}}}]\n{when}\n  - {{}}"));
    assert_eq!(allow.rules.len(), 1, "the ALLOW rule with connection.sni is dropped, the other kept");
    assert!(allow.rules[0].to.is_empty());
    assert!(allow.not_enforced[0].contains("rules[0].when[0]: connection.sni"), "{:?}", allow.not_enforced);
    let experimental =
        "    when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.table]\", values: [\"[update]\"]}]";
    let deny = one(&format!(
        "{TO_GATEWAY}\n  action: DENY\n  rules:\n  - to: [{{operation: {{methods: [GET]}}}}]\n{experimental}"
    ));
    assert_eq!(deny.rules.len(), 1);
    assert!(deny.rules[0].when.is_empty(), "the DENY condition is removed: it matches more");
    assert_eq!(deny.rules[0].to[0].methods, [exact("GET")]);
    assert!(deny.not_enforced[0].contains("not supported by Ambit"), "{:?}", deny.not_enforced);
}
