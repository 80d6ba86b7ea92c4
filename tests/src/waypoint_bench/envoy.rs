//! Envoy as the baseline proxy: a static bootstrap with the waypoint's routes, run in its own pod
//! (not enrolled), its admin API on the pod's loopback for readiness and request counters.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::Protocol;
use crate::{ChildGuard, Pod};

/// Envoy's admin API, inside its pod.
const ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener port for `protocol`: one listener per upstream HTTP version.
pub(super) fn port(protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Http1 => 10001,
        Protocol::H2c => 10002,
    }
}

/// Cluster name prefix for `protocol`: `h1_header`, `h1_default`, `h2_header`, `h2_default`.
fn prefix(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http1 => "h1",
        Protocol::H2c => "h2",
    }
}

/// The cluster a route sends to (`header` or `default`): the counter that proves the route.
pub(super) fn cluster(protocol: Protocol, route: &str) -> String {
    format!("{}_{route}", prefix(protocol))
}

/// The static bootstrap (JSON, which Envoy reads by the `.json` extension). Per protocol, one
/// listener (codec AUTO, like the waypoint's HTTP ports, which take HTTP/1.1 and h2c) with the
/// same two routes as the benchmark's VirtualServices — `x-bench-route: header` first, then a
/// default — each to its own cluster of the one server, so the cluster counters say which route
/// a request took. Upstream HTTP/1.1 or HTTP/2 as the listener's protocol. One access log line
/// per request to a file, as the waypoint logs each request.
pub(super) fn bootstrap(upstream: SocketAddr, access_log: &Path) -> Value {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for protocol in Protocol::ALL {
        let routes: Vec<Value> = ["header", "default"]
            .iter()
            .map(|route| {
                let mut matcher = json!({ "prefix": "/" });
                if *route == "header" {
                    matcher["headers"] = json!([{ "name": "x-bench-route", "string_match": { "exact": "header" } }]);
                }
                json!({ "name": route, "match": matcher, "route": { "cluster": cluster(protocol, route) } })
            })
            .collect();
        listeners.push(json!({
            "name": format!("bench_{}", prefix(protocol)),
            "address": { "socket_address": { "address": "0.0.0.0", "port_value": port(protocol) } },
            "filter_chains": [{ "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": format!("bench_{}", prefix(protocol)),
                    "codec_type": "AUTO",
                    "access_log": [{
                        "name": "envoy.access_loggers.file",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": access_log.display().to_string(),
                        },
                    }],
                    "route_config": {
                        "name": "bench",
                        "virtual_hosts": [{ "name": "echo", "domains": ["*"], "routes": routes }],
                    },
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                    }],
                },
            }] }],
        }));
        for route in ["header", "default"] {
            let name = cluster(protocol, route);
            let mut cluster = json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                        "address": upstream.ip().to_string(), "port_value": upstream.port(),
                    } } } }] }],
                },
            });
            if protocol == Protocol::H2c {
                cluster["typed_extension_protocol_options"] = json!({
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                    },
                });
            }
            clusters.push(cluster);
        }
    }
    json!({
        "admin": { "address": { "socket_address": { "address": ADMIN.ip().to_string(), "port_value": ADMIN.port() } } },
        "static_resources": { "listeners": listeners, "clusters": clusters },
    })
}

/// A running Envoy (killed by PID when dropped).
pub(super) struct Envoy {
    process: ChildGuard,
    workers: usize,
}

impl Envoy {
    /// Writes the bootstrap into `dir` and starts `binary` in `pod` with `workers` worker
    /// threads; returns once its admin API says it is live.
    pub(super) fn start(
        binary: &Path,
        pod: &Pod,
        upstream: SocketAddr,
        workers: usize,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let config = dir.join("envoy-bench.json");
        let access_log = dir.join("envoy-access.log");
        let text = serde_json::to_string_pretty(&bootstrap(upstream, &access_log)).context("the Envoy bootstrap")?;
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let (config, concurrency) = (config.display().to_string(), workers.to_string());
        let args = ["-c", &config, "--concurrency", &concurrency, "--disable-hot-restart", "-l", "warning"];
        let process = pod.spawn(binary, &args)?;
        let envoy = Self { process, workers };
        envoy.wait_live(pod).with_context(|| format!("Envoy's output is in {}", pod.log_path().display()))?;
        Ok(envoy)
    }

    fn wait_live(&self, pod: &Pod) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_wait()? {
                bail!("envoy (pid {}) exited with {status} before it was ready", self.process.pid());
            }
            if let Ok((200, _)) = crate::http::get(pod.netns(), ADMIN, "/ready", Duration::from_secs(1)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("envoy (pid {}) was not ready after {READY_TIMEOUT:?}", self.process.pid());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The `--concurrency` it was started with.
    pub(super) fn workers(&self) -> usize {
        self.workers
    }

    /// Its counters (`/stats`, text form `name: value`), the ones that are numbers.
    pub(super) fn counters(&self, pod: &Pod) -> anyhow::Result<BTreeMap<String, u64>> {
        let (status, body) = crate::http::get(pod.netns(), ADMIN, "/stats", Duration::from_secs(5))
            .context("GET /stats on Envoy's admin API")?;
        if status != 200 {
            bail!("Envoy's /stats answered {status}");
        }
        Ok(parse_counters(&String::from_utf8_lossy(&body)))
    }
}

fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_has_both_routes_per_protocol_and_h2_upstreams_only_for_h2() {
        let upstream: SocketAddr = "10.1.0.2:8080".parse().unwrap();
        let config = bootstrap(upstream, Path::new("/tmp/access.log"));
        let listeners = config["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        for (listener, protocol) in listeners.iter().zip(Protocol::ALL) {
            assert_eq!(listener["address"]["socket_address"]["port_value"], port(protocol));
            let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
            let routes = hcm["route_config"]["virtual_hosts"][0]["routes"].as_array().unwrap();
            assert_eq!(routes[0]["match"]["headers"][0]["name"], "x-bench-route", "the header match comes first");
            assert_eq!(routes[0]["route"]["cluster"], cluster(protocol, "header"));
            assert!(routes[1]["match"].get("headers").is_none());
            assert_eq!(routes[1]["route"]["cluster"], cluster(protocol, "default"));
            assert_eq!(hcm["access_log"][0]["typed_config"]["path"], "/tmp/access.log");
        }
        let clusters = config["static_resources"]["clusters"].as_array().unwrap();
        assert_eq!(clusters.len(), 4);
        for cluster in clusters {
            let h2 = cluster["name"].as_str().unwrap().starts_with("h2_");
            assert_eq!(cluster.get("typed_extension_protocol_options").is_some(), h2, "{cluster}");
            let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
            assert_eq!(address["socket_address"]["address"], "10.1.0.2");
        }
        assert_eq!(config["admin"]["address"]["socket_address"]["address"], "127.0.0.1");
    }

    #[test]
    fn counters_are_read_from_the_text_stats() {
        let text = "cluster.h1_default.upstream_rq_total: 42\ncluster.h1_default.upstream_rq_time: P0(nan,1)\n";
        let counters = parse_counters(text);
        assert_eq!(counters.get("cluster.h1_default.upstream_rq_total"), Some(&42));
        assert_eq!(counters.len(), 1, "histograms are skipped");
    }
}
