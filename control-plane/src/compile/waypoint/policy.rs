//! DestinationRules → the traffic policy a cluster runs with: which rule applies, Istio's override
//! rules, and Istio's and Envoy's defaults written out.

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{self as pb, AppProtocol, HashAlgorithm as PbHashAlgorithm, SimpleLoadBalancer, UpstreamProtocol},
    config::{
        Snapshot, hosts,
        model::{
            ConnectionPool, DestinationRule, H2UpgradePolicy, HashAlgorithm, HashKey, LoadBalancer,
            LoadBalancerSettings, OutlierDetection, SimpleLb, Subset, TrafficPolicy,
        },
    },
};

use super::{index::resolve, ms};
use crate::compile::MeshConfig;

/// Istio's circuit-breaker default for every limit (`getDefaultCircuitBreakerThresholds`).
pub(super) const UNLIMITED: u32 = u32::MAX;
/// MeshConfig `connectTimeout`'s default.
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Istio's documented default for TCP and HTTP idle timeouts.
const IDLE_TIMEOUT_MS: u64 = 3_600_000;
/// Envoy's ring hash default minimum size.
const RING_SIZE: u64 = 1024;

/// DestinationRules without a `workloadSelector`, by namespace, with hosts fully qualified.
/// (Rules with a selector apply to the proxies of the selected workloads, which a waypoint's
/// compiled routes are not: they are left out.)
pub(super) struct RuleIndex<'a> {
    by_namespace: BTreeMap<&'a str, Vec<(String, &'a DestinationRule)>>,
}

impl<'a> RuleIndex<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, mesh: &MeshConfig) -> Self {
        let mut by_namespace: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for rule in snapshot.destination_rules().filter(|r| r.workload_selector.is_none()) {
            let host = resolve(&rule.host, &rule.meta.namespace, mesh);
            by_namespace.entry(rule.meta.namespace.as_str()).or_default().push((host, rule));
        }
        Self { by_namespace }
    }

    /// The rule Istio applies for a proxy in `proxy_namespace` sending to `host`
    /// (`PushContext.destinationRule`): a rule in the proxy's own namespace; else one in the
    /// service's namespace exported to the proxy's; else one in the root namespace, likewise.
    /// Within a namespace the most specific host wins (exact, then the longest wildcard).
    pub(super) fn lookup(
        &self,
        proxy_namespace: &str,
        service_namespace: Option<&str>,
        root_namespace: &str,
        host: &str,
    ) -> Option<&'a DestinationRule> {
        let in_namespace = |ns: &str, exported: bool| {
            self.by_namespace
                .get(ns)?
                .iter()
                .filter(|(_, r)| !exported || r.export_to.visible_to(proxy_namespace))
                .filter(|(pattern, _)| hosts::matches(pattern, host))
                .max_by_key(|(pattern, _)| (pattern == host, pattern.len()))
                .map(|(_, r)| *r)
        };
        in_namespace(proxy_namespace, false)
            .or_else(|| service_namespace.and_then(|ns| in_namespace(ns, true)))
            .or_else(|| in_namespace(root_namespace, true))
    }
}

/// The parts of a traffic policy a waypoint applies. Each part replaces its less specific
/// counterpart whole; parts are never merged field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Parts<'a> {
    pub(super) load_balancer: Option<&'a LoadBalancerSettings>,
    pub(super) connection_pool: Option<&'a ConnectionPool>,
    pub(super) outlier_detection: Option<&'a OutlierDetection>,
}

impl<'a> Parts<'a> {
    /// A policy's settings for `port`: its `portLevelSettings` entry when it has one (and
    /// `true`), taken whole, so parts the entry omits fall back to defaults rather than to the
    /// policy's; else the policy's own settings.
    fn for_port(policy: &'a TrafficPolicy, port: u16) -> (Self, bool) {
        match policy.port_level_settings.iter().find(|p| p.port == port) {
            Some(p) => (
                Self {
                    load_balancer: p.load_balancer.as_ref(),
                    connection_pool: p.connection_pool.as_ref(),
                    outlier_detection: p.outlier_detection.as_ref(),
                },
                true,
            ),
            None => (
                Self {
                    load_balancer: policy.load_balancer.as_ref(),
                    connection_pool: policy.connection_pool.as_ref(),
                    outlier_detection: policy.outlier_detection.as_ref(),
                },
                false,
            ),
        }
    }

    /// Istio's override rules (`MergeSubsetTrafficPolicy`): rule-level settings (or the rule's
    /// port-level entry for `port`); then the subset's settings replace the parts they set; a
    /// subset port-level entry for `port` replaces everything.
    /// <https://istio.io/latest/docs/reference/config/networking/destination-rule/#TrafficPolicy-PortTrafficPolicy>
    pub(super) fn effective(rule: Option<&'a DestinationRule>, subset: Option<&'a Subset>, port: u16) -> Self {
        let base = rule.and_then(|r| r.traffic_policy.as_ref()).map(|p| Self::for_port(p, port).0).unwrap_or_default();
        let Some(policy) = subset.and_then(|s| s.traffic_policy.as_ref()) else { return base };
        let (own, port_level) = Self::for_port(policy, port);
        if port_level {
            return own;
        }
        Self {
            load_balancer: own.load_balancer.or(base.load_balancer),
            connection_pool: own.connection_pool.or(base.connection_pool),
            outlier_detection: own.outlier_detection.or(base.outlier_detection),
        }
    }

    pub(super) fn is_consistent_hash(&self) -> bool {
        matches!(self.load_balancer.and_then(|l| l.algorithm.as_ref()), Some(LoadBalancer::ConsistentHash(_)))
    }

    /// The load balancer; LEAST_REQUEST when none is set (Istio's default since 1.14).
    pub(super) fn load_balancer(&self) -> pb::LoadBalancer {
        use pb::load_balancer::Policy;
        let policy = match self.load_balancer.and_then(|l| l.algorithm.as_ref()) {
            None => Policy::Simple(SimpleLoadBalancer::LeastRequest.into()),
            Some(LoadBalancer::Simple(simple)) => Policy::Simple(
                match simple {
                    SimpleLb::RoundRobin => SimpleLoadBalancer::RoundRobin,
                    SimpleLb::LeastRequest => SimpleLoadBalancer::LeastRequest,
                    SimpleLb::Random => SimpleLoadBalancer::Random,
                    SimpleLb::Passthrough => SimpleLoadBalancer::Passthrough,
                }
                .into(),
            ),
            Some(LoadBalancer::ConsistentHash(hash)) => {
                Policy::ConsistentHash(consistent_hash(&hash.key, hash.algorithm))
            }
        };
        pb::LoadBalancer { policy: Some(policy) }
    }

    /// Circuit-breaker limits and timeouts; Istio treats a limit of 0 as unset.
    pub(super) fn connection_pool(&self) -> pb::ConnectionPool {
        let tcp = self.connection_pool.and_then(|p| p.tcp.as_ref());
        let http = self.connection_pool.and_then(|p| p.http.as_ref());
        let limit = |v: Option<u32>| v.filter(|v| *v > 0).unwrap_or(UNLIMITED);
        pb::ConnectionPool {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            connect_timeout_ms: tcp.and_then(|t| t.connect_timeout).map_or(CONNECT_TIMEOUT_MS, ms),
            tcp_idle_timeout_ms: tcp.and_then(|t| t.idle_timeout).map_or(IDLE_TIMEOUT_MS, ms),
            http1_max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
            http2_max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_requests_per_connection: http.and_then(|h| h.max_requests_per_connection).unwrap_or(0),
            max_retries: limit(http.and_then(|h| h.max_retries)),
            http_idle_timeout_ms: http.and_then(|h| h.idle_timeout).map_or(IDLE_TIMEOUT_MS, ms),
        }
    }

    /// Istio's translation (`applyOutlierDetection`) over Envoy's defaults: 5 consecutive 5xx,
    /// gateway errors not counted, 10 s interval, 30 s base ejection, 10 % at most; the panic
    /// threshold (min health) 0 unless set.
    pub(super) fn outlier_detection(&self) -> Option<pb::OutlierDetection> {
        let o = self.outlier_detection?;
        let (mut five_xx, mut gateway) = (5, 0);
        if let Some(n) = o.consecutive_errors.filter(|n| *n > 0) {
            // The deprecated field counts gateway errors only (istio/api#617).
            (five_xx, gateway) = (0, n);
        }
        five_xx = o.consecutive_5xx_errors.unwrap_or(five_xx);
        gateway = o.consecutive_gateway_errors.unwrap_or(gateway);
        Some(pb::OutlierDetection {
            consecutive_5xx_errors: five_xx,
            consecutive_gateway_errors: gateway,
            interval_ms: o.interval.map_or(10_000, ms),
            base_ejection_time_ms: o.base_ejection_time.map_or(30_000, ms),
            max_ejection_percent: o.max_ejection_percent.filter(|p| *p > 0).unwrap_or(10),
            min_health_percent: o.min_health_percent.unwrap_or(0),
        })
    }

    /// How the waypoint speaks HTTP to the endpoints (Istio's `setUpstreamProtocol`).
    pub(super) fn upstream_protocol(&self, protocol: AppProtocol) -> UpstreamProtocol {
        let http = self.connection_pool.and_then(|p| p.http.as_ref());
        match protocol {
            AppProtocol::Http2 | AppProtocol::Grpc => UpstreamProtocol::Http2,
            AppProtocol::Unspecified => UpstreamProtocol::Downstream,
            AppProtocol::Tcp => UpstreamProtocol::Unspecified,
            AppProtocol::Http => match http {
                Some(h) if h.use_client_protocol => UpstreamProtocol::Downstream,
                Some(h) if h.h2_upgrade_policy == H2UpgradePolicy::Upgrade => UpstreamProtocol::Http2,
                _ => UpstreamProtocol::Http1,
            },
        }
    }
}

fn consistent_hash(key: &HashKey, algorithm: HashAlgorithm) -> pb::ConsistentHash {
    use pb::consistent_hash::Key;
    let key = match key {
        HashKey::HttpHeaderName(name) => Key::HeaderName(name.to_ascii_lowercase()),
        HashKey::HttpCookie { name, path, ttl } => Key::Cookie(pb::HashCookie {
            name: name.clone(),
            path: path.clone().unwrap_or_default(),
            ttl_ms: ttl.map(ms),
        }),
        HashKey::UseSourceIp => Key::UseSourceIp(true),
        HashKey::HttpQueryParameterName(name) => Key::QueryParameterName(name.clone()),
    };
    let (algorithm, table_size) = match algorithm {
        HashAlgorithm::RingHash { minimum_ring_size } => {
            (PbHashAlgorithm::RingHash, minimum_ring_size.filter(|s| *s > 0).unwrap_or(RING_SIZE))
        }
        HashAlgorithm::Maglev { table_size } => (PbHashAlgorithm::Maglev, table_size),
    };
    pb::ConsistentHash { key: Some(key), algorithm: algorithm.into(), table_size }
}
