//! Traffic policy: Istio's override rules (rule → rule port-level → subset → subset port-level),
//! defaults, and which DestinationRule applies.

use ambit_common::{
    api::v1::{
        AppProtocol, ConnectionPool, HashAlgorithm, LoadBalancer, OutlierDetection, SimpleLoadBalancer,
        UpstreamProtocol, consistent_hash::Key, load_balancer::Policy,
    },
    config::Snapshot,
};

use super::{SHOP, cluster, compiled, snapshot};
use crate::compile::waypoint::policy::{Parts, UNLIMITED};

/// `SHOP` plus a DestinationRule for `cart` with `spec` (indented two spaces).
fn with_rule(spec: &str) -> Snapshot {
    snapshot(&format!(
        "{SHOP}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\n\
         spec:\n  host: cart\n{spec}"
    ))
}

fn effective(
    s: &Snapshot,
    subset: Option<&str>,
    port: u16,
) -> (LoadBalancer, ConnectionPool, Option<OutlierDetection>) {
    let rule = s.destination_rules().next();
    let parts = Parts::effective(rule, subset.and_then(|n| rule?.subset(n)), port);
    (parts.load_balancer(), parts.connection_pool(), parts.outlier_detection())
}

fn simple(lb: &LoadBalancer) -> SimpleLoadBalancer {
    match lb.policy {
        Some(Policy::Simple(s)) => SimpleLoadBalancer::try_from(s).unwrap(),
        ref other => panic!("{other:?}"),
    }
}

const RULE_WITH_SUBSETS: &str = "  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
    outlierDetection: {consecutive5xxErrors: 7}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
";

#[test]
fn without_a_rule_istio_defaults_are_explicit() {
    let s = snapshot(SHOP);
    let (lb, pool, outlier) = effective(&s, None, 8080);
    assert_eq!(simple(&lb), SimpleLoadBalancer::LeastRequest);
    let unlimited = (UNLIMITED, UNLIMITED, UNLIMITED, UNLIMITED);
    assert_eq!(
        (pool.max_connections, pool.http1_max_pending_requests, pool.http2_max_requests, pool.max_retries),
        unlimited
    );
    assert_eq!(
        (pool.connect_timeout_ms, pool.tcp_idle_timeout_ms, pool.http_idle_timeout_ms),
        (10_000, 3_600_000, 3_600_000)
    );
    assert_eq!(pool.max_requests_per_connection, 0, "unlimited");
    assert_eq!(outlier, None, "no outlier detection unless configured");
}

#[test]
fn rule_level_policy_applies_to_subsets_without_their_own() {
    let s = with_rule(RULE_WITH_SUBSETS);
    for subset in [None, Some("v1")] {
        let (lb, pool, outlier) = effective(&s, subset, 8080);
        assert_eq!(simple(&lb), SimpleLoadBalancer::Random, "{subset:?}");
        assert_eq!(pool.max_connections, 100);
        assert_eq!(outlier.unwrap().consecutive_5xx_errors, 7);
    }
}

#[test]
fn subset_parts_replace_rule_parts_and_inherit_the_others() {
    let s = with_rule(RULE_WITH_SUBSETS);
    let (lb, pool, outlier) = effective(&s, Some("v2"), 8080);
    assert_eq!(simple(&lb), SimpleLoadBalancer::RoundRobin);
    assert_eq!(pool.max_connections, 100, "inherited from the rule");
    assert_eq!(outlier.unwrap().consecutive_5xx_errors, 7, "inherited from the rule");
}

#[test]
fn rule_port_level_settings_replace_the_rule_level_whole() {
    let s = with_rule(
        "  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
    portLevelSettings:
    - port: {number: 8080}
      loadBalancer: {simple: ROUND_ROBIN}
",
    );
    let (lb, pool, _) = effective(&s, None, 8080);
    assert_eq!(simple(&lb), SimpleLoadBalancer::RoundRobin);
    assert_eq!(pool.max_connections, UNLIMITED, "not inherited: port-level settings take defaults for what they omit");
    let (lb, pool, _) = effective(&s, None, 9090);
    assert_eq!((simple(&lb), pool.max_connections), (SimpleLoadBalancer::Random, 100), "other ports keep the rule's");
}

#[test]
fn subset_port_level_settings_replace_everything_for_their_port() {
    let s = with_rule(
        "  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 5}}
      portLevelSettings:
      - port: {number: 8080}
        outlierDetection: {consecutive5xxErrors: 3}
",
    );
    let (lb, pool, outlier) = effective(&s, Some("v1"), 8080);
    assert_eq!(simple(&lb), SimpleLoadBalancer::LeastRequest, "neither the rule's nor the subset's");
    assert_eq!(pool.max_connections, UNLIMITED);
    assert_eq!(outlier.unwrap().consecutive_5xx_errors, 3);
    let (lb, pool, outlier) = effective(&s, Some("v1"), 9090);
    assert_eq!((simple(&lb), pool.max_connections, outlier), (SimpleLoadBalancer::Random, 5, None));
}

#[test]
fn subset_parts_apply_over_the_rules_port_level_settings() {
    let s = with_rule(
        "  trafficPolicy:
    portLevelSettings:
    - port: {number: 8080}
      connectionPool: {tcp: {maxConnections: 7}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
",
    );
    let (lb, pool, _) = effective(&s, Some("v1"), 8080);
    assert_eq!((simple(&lb), pool.max_connections), (SimpleLoadBalancer::RoundRobin, 7));
}

#[test]
fn limits_of_zero_are_unset_and_outlier_defaults_follow_envoy() {
    let s = with_rule(
        "  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 0, connectTimeout: 250ms, idleTimeout: 2h}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 0, maxRetries: 4, maxRequestsPerConnection: 1, idleTimeout: 30s}
    outlierDetection: {consecutiveGatewayErrors: 2, maxEjectionPercent: 0}
",
    );
    let (_, pool, outlier) = effective(&s, None, 8080);
    assert_eq!((pool.max_connections, pool.http2_max_requests), (UNLIMITED, UNLIMITED));
    assert_eq!(
        (pool.connect_timeout_ms, pool.tcp_idle_timeout_ms, pool.http_idle_timeout_ms),
        (250, 7_200_000, 30_000)
    );
    assert_eq!((pool.http1_max_pending_requests, pool.max_retries, pool.max_requests_per_connection), (1, 4, 1));
    let expected = OutlierDetection {
        consecutive_5xx_errors: 5,
        consecutive_gateway_errors: 2,
        interval_ms: 10_000,
        base_ejection_time_ms: 30_000,
        max_ejection_percent: 10,
        min_health_percent: 0,
    };
    assert_eq!(outlier, Some(expected));
    let s = with_rule("  trafficPolicy:\n    outlierDetection: {consecutiveErrors: 4, interval: 1s}\n");
    let outlier = effective(&s, None, 8080).2.unwrap();
    assert_eq!(
        (outlier.consecutive_5xx_errors, outlier.consecutive_gateway_errors, outlier.interval_ms),
        (0, 4, 1_000),
        "the deprecated consecutiveErrors counts gateway errors only"
    );
}

#[test]
fn consistent_hash_keys_and_upstream_protocols() {
    let s = with_rule(
        "  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 10s}}
    connectionPool: {http: {useClientProtocol: true}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer:
        consistentHash: {httpHeaderName: X-User, maglev: {tableSize: 65537}}
",
    );
    let rule = s.destination_rules().next();
    let parts = Parts::effective(rule, None, 8080);
    let Some(Policy::ConsistentHash(hash)) = parts.load_balancer().policy else { panic!() };
    let Some(Key::Cookie(cookie)) = &hash.key else { panic!("{hash:?}") };
    assert_eq!((cookie.name.as_str(), cookie.ttl_ms), ("user", Some(10_000)));
    assert_eq!((hash.algorithm(), hash.table_size), (HashAlgorithm::RingHash, 1024));
    assert!(parts.is_consistent_hash());
    assert_eq!(parts.upstream_protocol(AppProtocol::Http), UpstreamProtocol::Downstream, "useClientProtocol");
    assert_eq!(parts.upstream_protocol(AppProtocol::Grpc), UpstreamProtocol::Http2);
    assert_eq!(parts.upstream_protocol(AppProtocol::Tcp), UpstreamProtocol::Unspecified);
    let parts = Parts::effective(rule, None, 9090);
    let Some(Policy::ConsistentHash(hash)) = parts.load_balancer().policy else { panic!() };
    assert_eq!(hash.key, Some(Key::HeaderName("x-user".into())));
    assert_eq!((hash.algorithm(), hash.table_size), (HashAlgorithm::Maglev, 65537));
    assert_eq!(parts.upstream_protocol(AppProtocol::Http), UpstreamProtocol::Http1, "port level: pool defaults");
}

#[test]
fn the_rule_in_the_waypoint_namespace_wins_then_the_services_then_the_roots() {
    let rule = |ns: &str, name: &str, host: &str, export: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  host: {host}\n  exportTo: [{export}]\n  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}\n---\n"
        )
    };
    let ns = |n: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n");
    let host = "cart.shop.svc.cluster.local";
    let rule_of = |extra: &str| cluster(&compiled(extra), &format!("{host}|8080|")).destination_rule.clone();
    assert_eq!(
        rule_of(&format!("{}{}", ns("istio-system"), rule("istio-system", "root", host, "'*'"))),
        "istio-system/root"
    );
    let both = format!(
        "{}{}{}",
        ns("istio-system"),
        rule("istio-system", "root", host, "'*'"),
        rule("shop", "own", "cart", "'.'")
    );
    assert_eq!(rule_of(&both), "shop/own");
    let wildcard = format!(
        "{}{}",
        rule("shop", "wild", "'*.shop.svc.cluster.local'", "'*'"),
        rule("shop", "exact", "cart", "'*'")
    );
    assert_eq!(rule_of(&wildcard), "shop/exact", "the most specific host in a namespace");
    let hidden = format!("{}{}", ns("other"), rule("other", "private", host, "'.'"));
    assert_eq!(rule_of(&hidden), "", "not exported to the waypoint's namespace");
}
