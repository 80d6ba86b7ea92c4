//! TrafficPolicy (top level, per subset, per port) → model.

use std::collections::BTreeSet;

use super::{at_most_one, count, int_percent, opt_duration, percent, port, wildcard_host};
use crate::config::{
    error::{FieldResult, Path},
    model::{
        ClientTls, ConnectionPool, ConsistentHash, H2UpgradePolicy, HashAlgorithm, HashKey, HttpPool, LoadBalancer,
        LoadBalancerSettings, LocalityDistribute, LocalityFailover, LocalityLbSetting, OutlierDetection,
        PortTrafficPolicy, ProxyProtocolVersion, RetryBudget, SimpleLb, TcpKeepalive, TcpPool, TlsMode, TrafficPolicy,
        Tunnel,
    },
    raw::destination_rule as rd,
};

pub(super) fn traffic_policy(raw: &rd::TrafficPolicy, at: &Path) -> FieldResult<TrafficPolicy> {
    let empty = raw.load_balancer.is_none()
        && raw.connection_pool.is_none()
        && raw.outlier_detection.is_none()
        && raw.tls.is_none()
        && raw.port_level_settings.is_empty()
        && raw.tunnel.is_none()
        && raw.proxy_protocol.is_none()
        && raw.retry_budget.is_none();
    if empty {
        return Err(at.err("traffic policy must have at least one field (or be left out)"));
    }
    at_most_one(at, &[("tunnel", raw.tunnel.is_some()), ("proxyProtocol", raw.proxy_protocol.is_some())], "set one")?;
    let mut seen = BTreeSet::new();
    let mut port_level_settings = Vec::new();
    for (i, p) in raw.port_level_settings.iter().enumerate() {
        let at = at.key("portLevelSettings").index(i);
        let policy = port_policy(p, &at)?;
        if !seen.insert(policy.port) {
            return Err(at.key("port").key("number").err(format!(
                "port {} already has settings in portLevelSettings; merge them into one entry",
                policy.port
            )));
        }
        port_level_settings.push(policy);
    }
    Ok(TrafficPolicy {
        load_balancer: raw.load_balancer.as_ref().map(|l| load_balancer(l, &at.key("loadBalancer"))).transpose()?,
        connection_pool: raw
            .connection_pool
            .as_ref()
            .map(|c| connection_pool(c, &at.key("connectionPool")))
            .transpose()?,
        outlier_detection: raw
            .outlier_detection
            .as_ref()
            .map(|o| outlier(o, &at.key("outlierDetection")))
            .transpose()?,
        tls: raw.tls.as_ref().map(|t| tls(t, &at.key("tls"))).transpose()?,
        port_level_settings,
        tunnel: raw.tunnel.as_ref().map(|t| tunnel(t, &at.key("tunnel"))).transpose()?,
        proxy_protocol: raw.proxy_protocol.as_ref().map(|p| proxy_protocol(p, &at.key("proxyProtocol"))).transpose()?,
        retry_budget: raw.retry_budget.as_ref().map(|r| retry_budget(r, &at.key("retryBudget"))).transpose()?,
    })
}

fn port_policy(raw: &rd::PortTrafficPolicy, at: &Path) -> FieldResult<PortTrafficPolicy> {
    let Some(selector) = &raw.port else {
        return Err(at.key("port").err("port-level settings need a port (port: {number: 8080})"));
    };
    let number = port(selector.number.unwrap_or(0), &at.key("port").key("number"))?;
    if raw.load_balancer.is_none()
        && raw.connection_pool.is_none()
        && raw.outlier_detection.is_none()
        && raw.tls.is_none()
    {
        return Err(at.err("port traffic policy must have at least one field besides port"));
    }
    Ok(PortTrafficPolicy {
        port: number,
        load_balancer: raw.load_balancer.as_ref().map(|l| load_balancer(l, &at.key("loadBalancer"))).transpose()?,
        connection_pool: raw
            .connection_pool
            .as_ref()
            .map(|c| connection_pool(c, &at.key("connectionPool")))
            .transpose()?,
        outlier_detection: raw
            .outlier_detection
            .as_ref()
            .map(|o| outlier(o, &at.key("outlierDetection")))
            .transpose()?,
        tls: raw.tls.as_ref().map(|t| tls(t, &at.key("tls"))).transpose()?,
    })
}

fn load_balancer(raw: &rd::LoadBalancerSettings, at: &Path) -> FieldResult<LoadBalancerSettings> {
    at_most_one(at, &[("simple", raw.simple.is_some()), ("consistentHash", raw.consistent_hash.is_some())], "set one")?;
    let algorithm = match (&raw.simple, &raw.consistent_hash) {
        (Some(s), _) => simple(s, &at.key("simple"))?.map(LoadBalancer::Simple),
        (None, Some(c)) => Some(LoadBalancer::ConsistentHash(consistent_hash(c, &at.key("consistentHash"))?)),
        (None, None) => None,
    };
    Ok(LoadBalancerSettings {
        algorithm,
        locality: raw.locality_lb_setting.as_ref().map(|l| locality(l, &at.key("localityLbSetting"))).transpose()?,
        warmup_duration: opt_duration(raw.warmup_duration_secs.as_ref(), &at.key("warmupDurationSecs"))?,
    })
}

fn simple(raw: &str, at: &Path) -> FieldResult<Option<SimpleLb>> {
    Ok(Some(match raw {
        "UNSPECIFIED" => return Ok(None),
        "ROUND_ROBIN" => SimpleLb::RoundRobin,
        "LEAST_REQUEST" | "LEAST_CONN" => SimpleLb::LeastRequest,
        "RANDOM" => SimpleLb::Random,
        "PASSTHROUGH" => SimpleLb::Passthrough,
        other => {
            return Err(at.err(format!(
                "{other:?} is not one of UNSPECIFIED, ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH"
            )));
        }
    }))
}

fn consistent_hash(raw: &rd::ConsistentHashLb, at: &Path) -> FieldResult<ConsistentHash> {
    let keys = [
        ("httpHeaderName", raw.http_header_name.is_some()),
        ("httpCookie", raw.http_cookie.is_some()),
        ("useSourceIp", raw.use_source_ip.is_some()),
        ("httpQueryParameterName", raw.http_query_parameter_name.is_some()),
    ];
    at_most_one(at, &keys, "a consistent hash uses exactly one key")?;
    let key = if let Some(h) = &raw.http_header_name {
        HashKey::HttpHeaderName(h.clone())
    } else if let Some(c) = &raw.http_cookie {
        if c.name.is_empty() {
            return Err(at.key("httpCookie").key("name").err("httpCookie needs a name"));
        }
        let ttl = c.ttl.as_ref().map(|t| super::any_duration(t, &at.key("httpCookie").key("ttl"))).transpose()?;
        HashKey::HttpCookie { name: c.name.clone(), path: c.path.clone(), ttl }
    } else if let Some(q) = &raw.http_query_parameter_name {
        HashKey::HttpQueryParameterName(q.clone())
    } else if raw.use_source_ip == Some(true) {
        HashKey::UseSourceIp
    } else {
        return Err(at.err(
            "consistentHash needs one key: httpHeaderName, httpCookie, useSourceIp: true or httpQueryParameterName",
        ));
    };
    let algorithms = [("ringHash", raw.ring_hash.is_some()), ("maglev", raw.maglev.is_some())];
    at_most_one(at, &algorithms, "pick one hash algorithm")?;
    let deprecated = [
        ("minimumRingSize", raw.minimum_ring_size.is_some()),
        ("ringHash or maglev", raw.ring_hash.is_some() || raw.maglev.is_some()),
    ];
    at_most_one(at, &deprecated, "minimumRingSize is deprecated, use ringHash.minimumRingSize")?;
    let ring = |v: Option<i64>, at: &Path| -> FieldResult<Option<u64>> {
        v.map(|v| u64::try_from(v).map_err(|_| at.err(format!("{v} must not be negative")))).transpose()
    };
    let algorithm = if let Some(m) = &raw.maglev {
        HashAlgorithm::Maglev { table_size: maglev_table(m.table_size, &at.key("maglev").key("tableSize"))? }
    } else if let Some(r) = &raw.ring_hash {
        HashAlgorithm::RingHash {
            minimum_ring_size: ring(r.minimum_ring_size, &at.key("ringHash").key("minimumRingSize"))?,
        }
    } else {
        HashAlgorithm::RingHash { minimum_ring_size: ring(raw.minimum_ring_size, &at.key("minimumRingSize"))? }
    };
    Ok(ConsistentHash { key, algorithm })
}

/// Envoy's rule: a prime below 5000011.
fn maglev_table(size: Option<i64>, at: &Path) -> FieldResult<u64> {
    let size = size
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| at.err("tableSize must be set for maglev"))?;
    // The bound is checked first so that the trial division below stays short.
    let prime = |n: u64| {
        n == 2
            || (!n.is_multiple_of(2)
                && n > 2
                && (3..).step_by(2).take_while(|f| f * f <= n).all(|f| !n.is_multiple_of(f)))
    };
    if size >= 5_000_011 || !prime(size) {
        return Err(at.err(format!("tableSize {size} must be a prime number below 5000011 (e.g. 65537)")));
    }
    Ok(size)
}

fn locality(raw: &rd::LocalityLbSetting, at: &Path) -> FieldResult<LocalityLbSetting> {
    at_most_one(at, &[("distribute", !raw.distribute.is_empty()), ("failover", !raw.failover.is_empty())], "set one")?;
    let mut distribute = Vec::new();
    for (i, d) in raw.distribute.iter().enumerate() {
        let at = at.key("distribute").index(i);
        let mut to = std::collections::BTreeMap::new();
        for (k, w) in &d.to {
            let w = u32::try_from(*w)
                .ok()
                .filter(|w| *w <= 100)
                .ok_or_else(|| at.key("to").entry(k).err(format!("weight {w} is not in range 0..100")))?;
            to.insert(k.clone(), w);
        }
        let sum: u32 = to.values().sum();
        if sum != 100 {
            return Err(at.key("to").err(format!("weights sum to {sum}; they must sum to 100")));
        }
        distribute.push(LocalityDistribute { from: d.from.clone(), to });
    }
    let failover = raw.failover.iter().map(|f| LocalityFailover { from: f.from.clone(), to: f.to.clone() }).collect();
    Ok(LocalityLbSetting {
        distribute,
        failover,
        failover_priority: raw.failover_priority.clone(),
        enabled: raw.enabled,
    })
}

fn connection_pool(raw: &rd::ConnectionPoolSettings, at: &Path) -> FieldResult<ConnectionPool> {
    if raw.tcp.is_none() && raw.http.is_none() {
        return Err(at.err("connection pool must have tcp and/or http settings"));
    }
    let tcp = match &raw.tcp {
        None => None,
        Some(t) => {
            let at = at.key("tcp");
            let keepalive = match &t.tcp_keepalive {
                None => None,
                Some(k) => Some(TcpKeepalive {
                    probes: count(k.probes, &at.key("tcpKeepalive").key("probes"))?,
                    time: opt_duration(k.time.as_ref(), &at.key("tcpKeepalive").key("time"))?,
                    interval: opt_duration(k.interval.as_ref(), &at.key("tcpKeepalive").key("interval"))?,
                }),
            };
            Some(TcpPool {
                max_connections: count(t.max_connections, &at.key("maxConnections"))?,
                connect_timeout: opt_duration(t.connect_timeout.as_ref(), &at.key("connectTimeout"))?,
                tcp_keepalive: keepalive,
                max_connection_duration: opt_duration(
                    t.max_connection_duration.as_ref(),
                    &at.key("maxConnectionDuration"),
                )?,
                idle_timeout: opt_duration(t.idle_timeout.as_ref(), &at.key("idleTimeout"))?,
            })
        }
    };
    let http = raw.http.as_ref().map(|h| http_pool(h, &at.key("http"))).transpose()?;
    Ok(ConnectionPool { tcp, http })
}

fn http_pool(h: &rd::HttpSettings, at: &Path) -> FieldResult<HttpPool> {
    let h2_upgrade_policy = match h.h2_upgrade_policy.as_deref() {
        None | Some("DEFAULT") => H2UpgradePolicy::Default,
        Some("DO_NOT_UPGRADE") => H2UpgradePolicy::DoNotUpgrade,
        Some("UPGRADE") => H2UpgradePolicy::Upgrade,
        Some(other) => {
            return Err(at
                .key("h2UpgradePolicy")
                .err(format!("{other:?} is not one of DEFAULT, DO_NOT_UPGRADE, UPGRADE")));
        }
    };
    let use_client_protocol = h.use_client_protocol.unwrap_or(false);
    if h2_upgrade_policy == H2UpgradePolicy::Upgrade && use_client_protocol {
        return Err(at
            .key("useClientProtocol")
            .err("useClientProtocol must not be true when h2UpgradePolicy is UPGRADE"));
    }
    Ok(HttpPool {
        http1_max_pending_requests: count(h.http1_max_pending_requests, &at.key("http1MaxPendingRequests"))?,
        http2_max_requests: count(h.http2_max_requests, &at.key("http2MaxRequests"))?,
        max_requests_per_connection: count(h.max_requests_per_connection, &at.key("maxRequestsPerConnection"))?,
        max_retries: count(h.max_retries, &at.key("maxRetries"))?,
        idle_timeout: opt_duration(h.idle_timeout.as_ref(), &at.key("idleTimeout"))?,
        h2_upgrade_policy,
        use_client_protocol,
        max_concurrent_streams: count(h.max_concurrent_streams, &at.key("maxConcurrentStreams"))?,
    })
}

fn outlier(raw: &rd::OutlierDetection, at: &Path) -> FieldResult<OutlierDetection> {
    let local = count(raw.consecutive_local_origin_failures, &at.key("consecutiveLocalOriginFailures"))?;
    if local.is_some_and(|n| n > 0) && !raw.split_external_local_origin_errors {
        return Err(at
            .key("consecutiveLocalOriginFailures")
            .err("consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true"));
    }
    Ok(OutlierDetection {
        consecutive_errors: count(raw.consecutive_errors, &at.key("consecutiveErrors"))?,
        consecutive_5xx_errors: count(raw.consecutive_5xx_errors, &at.key("consecutive5xxErrors"))?,
        consecutive_gateway_errors: count(raw.consecutive_gateway_errors, &at.key("consecutiveGatewayErrors"))?,
        consecutive_local_origin_failures: local,
        split_external_local_origin_errors: raw.split_external_local_origin_errors,
        interval: opt_duration(raw.interval.as_ref(), &at.key("interval"))?,
        base_ejection_time: opt_duration(raw.base_ejection_time.as_ref(), &at.key("baseEjectionTime"))?,
        max_ejection_percent: int_percent(raw.max_ejection_percent, &at.key("maxEjectionPercent"))?,
        min_health_percent: int_percent(raw.min_health_percent, &at.key("minHealthPercent"))?,
    })
}

fn tls(raw: &rd::ClientTlsSettings, at: &Path) -> FieldResult<ClientTls> {
    let mode = match raw.mode.as_deref().unwrap_or("DISABLE") {
        "DISABLE" => TlsMode::Disable,
        "SIMPLE" => TlsMode::Simple,
        "MUTUAL" => TlsMode::Mutual,
        "ISTIO_MUTUAL" => TlsMode::IstioMutual,
        other => {
            return Err(at.key("mode").err(format!("{other:?} is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL")));
        }
    };
    let has_files = raw.client_certificate.is_some() || raw.private_key.is_some() || raw.ca_certificates.is_some();
    if mode == TlsMode::IstioMutual && (has_files || raw.credential_name.is_some()) {
        return Err(at.err("ISTIO_MUTUAL uses the mesh's certificates; remove clientCertificate, privateKey, caCertificates and credentialName"));
    }
    if mode == TlsMode::Mutual
        && raw.credential_name.is_none()
        && (raw.client_certificate.is_none() || raw.private_key.is_none())
    {
        return Err(at.err("MUTUAL needs clientCertificate and privateKey (or credentialName)"));
    }
    Ok(ClientTls {
        mode,
        client_certificate: raw.client_certificate.clone(),
        private_key: raw.private_key.clone(),
        ca_certificates: raw.ca_certificates.clone(),
        credential_name: raw.credential_name.clone(),
        subject_alt_names: raw.subject_alt_names.clone(),
        sni: raw.sni.clone(),
        insecure_skip_verify: raw.insecure_skip_verify,
        ca_crl: raw.ca_crl.clone(),
    })
}

fn tunnel(raw: &rd::TunnelSettings, at: &Path) -> FieldResult<Tunnel> {
    let protocol = raw.protocol.clone().unwrap_or_else(|| "CONNECT".to_string());
    if protocol != "CONNECT" && protocol != "POST" {
        return Err(at.key("protocol").err(format!("tunnel protocol {protocol:?} must be \"CONNECT\" or \"POST\"")));
    }
    if raw.target_host.parse::<std::net::IpAddr>().is_err() {
        wildcard_host(&raw.target_host).map_err(|e| at.key("targetHost").err(e))?;
    }
    let target_port = port(raw.target_port.unwrap_or(0), &at.key("targetPort"))?;
    Ok(Tunnel { protocol, target_host: raw.target_host.clone(), target_port })
}

fn proxy_protocol(raw: &rd::ProxyProtocol, at: &Path) -> FieldResult<ProxyProtocolVersion> {
    match raw.version.as_deref().unwrap_or("V1") {
        "V1" => Ok(ProxyProtocolVersion::V1),
        "V2" => Ok(ProxyProtocolVersion::V2),
        other => Err(at.key("version").err(format!("proxy protocol version {other:?} is not one of V1, V2"))),
    }
}

fn retry_budget(raw: &rd::RetryBudget, at: &Path) -> FieldResult<RetryBudget> {
    Ok(RetryBudget {
        percent: raw.percent.as_ref().map(|p| percent(p, &at.key("percent"))).transpose()?,
        min_retry_concurrency: count(raw.min_retry_concurrency, &at.key("minRetryConcurrency"))?,
    })
}
