//! Envoy as the baseline proxy: a static bootstrap with the waypoint's routes, run in its own pod
//! (not enrolled), its admin API on the pod's loopback for readiness and request counters.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
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

/// Where Envoy sits on the path, and so what its bootstrap holds.
pub(super) enum Role {
    /// A proxy in a pod outside the mesh, plaintext on both sides: one listener per protocol
    /// (`port(protocol)`), the server's address as every cluster's endpoint.
    Plain { upstream: SocketAddr },
    /// The namespace's waypoint, the way Istio ambient runs Envoy as one.
    Waypoint(WaypointRole),
}

/// Envoy as a waypoint: HBONE in on port 15008 (mutual TLS 1.3 with the waypoint's certificate,
/// HTTP/2 CONNECT terminated into an internal listener that holds the routes), HBONE out (each
/// upstream connection through an internal listener that tunnels it in a CONNECT stream, over
/// pooled mutual-TLS HTTP/2 connections, to the server pod's 15008, the server's identity
/// checked). Istio's waypoint has the same three listeners (`connect_terminate`,
/// `main_internal`, `connect_originate`) plus filters this one leaves out (telemetry, RBAC,
/// metadata exchange), so it does less per request than Istio's would.
pub(super) struct WaypointRole {
    /// Per protocol, the authority of the service the client sends to (the routes' virtual host).
    pub(super) services: Vec<(Protocol, String)>,
    /// The server pod's `ip:port`, the CONNECT authority of every upstream tunnel.
    pub(super) server: SocketAddr,
    /// The SPIFFE id the server's node proxy must present for the server pod.
    pub(super) server_identity: String,
    /// PEM files: the waypoint's certificate chain and key, and the mesh's root.
    pub(super) chain: PathBuf,
    pub(super) key: PathBuf,
    pub(super) roots: PathBuf,
}

/// The HBONE port, where Envoy as a waypoint listens and where it sends.
const HBONE_PORT: u16 = 15008;
/// Internal listeners (and the clusters that reach them) of Envoy as a waypoint.
const MAIN_INTERNAL: &str = "main_internal";
const CONNECT_ORIGINATE: &str = "connect_originate";
/// The cluster of HBONE connections to the server pod.
const HBONE_UPSTREAM: &str = "hbone_upstream";

/// The static bootstrap (JSON, which Envoy reads by the `.json` extension) for `role`.
///
/// In both roles Envoy holds the same two routes as the benchmark's VirtualServices —
/// `x-bench-route: header` first, then a default — each to its own cluster per protocol
/// (`cluster(protocol, route)`), so the cluster counters say which route a request took; the
/// HTTP listener's codec is AUTO (like the waypoint's HTTP ports, which take HTTP/1.1 and h2c),
/// upstream HTTP/1.1 or HTTP/2 as the client's protocol, and one access log line per request
/// goes to a file, as the waypoint logs each request.
pub(super) fn bootstrap(role: &Role, access_log: &Path) -> Value {
    let admin = json!({ "address": socket_address(ADMIN) });
    match role {
        Role::Plain { upstream } => {
            let listeners: Vec<Value> = Protocol::ALL
                .iter()
                .map(|&protocol| {
                    let name = format!("bench_{}", prefix(protocol));
                    let host = virtual_host("echo", vec!["*".into()], protocol);
                    json!({
                        "name": name,
                        "address": socket_address(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port(protocol))),
                        "filter_chains": [{ "filters": [http_connection_manager(&name, "AUTO", access_log, vec![host])] }],
                    })
                })
                .collect();
            let endpoint = socket_address(*upstream);
            let clusters: Vec<Value> = Protocol::ALL.iter().flat_map(|&p| route_clusters(p, &endpoint)).collect();
            json!({ "admin": admin, "static_resources": { "listeners": listeners, "clusters": clusters } })
        }
        Role::Waypoint(waypoint) => waypoint_bootstrap(admin, waypoint, access_log),
    }
}

fn waypoint_bootstrap(admin: Value, role: &WaypointRole, access_log: &Path) -> Value {
    let certificate = json!([{
        "certificate_chain": { "filename": role.chain.display().to_string() },
        "private_key": { "filename": role.key.display().to_string() },
    }]);
    let tls13 = json!({ "tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3" });
    let roots = json!({ "filename": role.roots.display().to_string() });
    // HBONE in: any mesh identity may connect (the source's node proxy presents the client
    // pod's); the CONNECT stream's bytes go to the routes' internal listener.
    let connect_terminate = json!({
        "name": "connect_terminate",
        "address": socket_address(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), HBONE_PORT)),
        "filter_chains": [{
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_params": tls13,
                        "alpn_protocols": ["h2"],
                        "tls_certificates": certificate,
                        "validation_context": { "trusted_ca": roots },
                    },
                },
            },
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": "connect_terminate",
                    "codec_type": "HTTP2",
                    "http2_protocol_options": { "allow_connect": true },
                    "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
                    "route_config": {
                        "name": "connect_terminate",
                        "virtual_hosts": [{
                            "name": "connect",
                            "domains": ["*"],
                            "routes": [{
                                "match": { "connect_matcher": {} },
                                "route": {
                                    "cluster": MAIN_INTERNAL,
                                    "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }],
                                },
                            }],
                        }],
                    },
                    "http_filters": [router()],
                },
            }],
        }],
    });
    // The routes, by the service the client addressed (its Host / :authority).
    let hosts: Vec<Value> = role
        .services
        .iter()
        .map(|(protocol, authority)| {
            let bare = authority.rsplit_once(':').map_or(authority.as_str(), |(host, _)| host);
            virtual_host(prefix(*protocol), vec![authority.clone(), bare.to_owned()], *protocol)
        })
        .collect();
    let main_internal = json!({
        "name": MAIN_INTERNAL,
        "internal_listener": {},
        "filter_chains": [{ "filters": [http_connection_manager(MAIN_INTERNAL, "AUTO", access_log, hosts)] }],
    });
    // HBONE out: each upstream connection becomes a CONNECT stream to the server pod.
    let connect_originate = json!({
        "name": CONNECT_ORIGINATE,
        "internal_listener": {},
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": CONNECT_ORIGINATE,
                "cluster": HBONE_UPSTREAM,
                "tunneling_config": { "hostname": role.server.to_string() },
            },
        }] }],
    });
    let internal = |listener: &str| json!({ "envoy_internal_address": { "server_listener_name": listener } });
    let mut clusters = vec![json!({
        "name": MAIN_INTERNAL,
        "type": "STATIC",
        "load_assignment": endpoints(MAIN_INTERNAL, &internal(MAIN_INTERNAL)),
    })];
    for &(protocol, _) in &role.services {
        clusters.extend(route_clusters(protocol, &internal(CONNECT_ORIGINATE)));
    }
    let mut hbone = json!({
        "name": HBONE_UPSTREAM,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": endpoints(HBONE_UPSTREAM, &socket_address(SocketAddr::new(role.server.ip(), HBONE_PORT))),
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "tls_params": tls13,
                    "alpn_protocols": ["h2"],
                    "tls_certificates": certificate,
                    "validation_context": {
                        "trusted_ca": roots,
                        "match_typed_subject_alt_names": [{
                            "san_type": "URI",
                            "matcher": { "exact": role.server_identity },
                        }],
                    },
                },
            },
        },
    });
    use_http2_upstream(&mut hbone);
    clusters.push(hbone);
    json!({
        "admin": admin,
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            },
        }],
        "static_resources": {
            "listeners": [connect_terminate, main_internal, connect_originate],
            "clusters": clusters,
        },
    })
}

const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

/// An HTTP connection manager with the routes of `hosts` and a file access log.
fn http_connection_manager(stat_prefix: &str, codec: &str, access_log: &Path, hosts: Vec<Value>) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": stat_prefix,
            "codec_type": codec,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": access_log.display().to_string(),
                },
            }],
            "route_config": { "name": "bench", "virtual_hosts": hosts },
            "http_filters": [router()],
        },
    })
}

/// A virtual host for `domains` with the benchmark's two routes to `protocol`'s clusters.
fn virtual_host(name: &str, domains: Vec<String>, protocol: Protocol) -> Value {
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
    json!({ "name": name, "domains": domains, "routes": routes })
}

/// `protocol`'s two route clusters, both with `endpoint` as their one endpoint, speaking
/// `protocol` upstream.
fn route_clusters(protocol: Protocol, endpoint: &Value) -> Vec<Value> {
    ["header", "default"]
        .iter()
        .map(|route| {
            let name = cluster(protocol, route);
            let mut cluster = json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "5s",
                "load_assignment": endpoints(&name, endpoint),
            });
            if protocol == Protocol::H2c {
                use_http2_upstream(&mut cluster);
            }
            cluster
        })
        .collect()
}

fn use_http2_upstream(cluster: &mut Value) {
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        },
    });
}

fn endpoints(cluster: &str, address: &Value) -> Value {
    json!({ "cluster_name": cluster, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": address } }] }] })
}

fn socket_address(address: SocketAddr) -> Value {
    json!({ "socket_address": { "address": address.ip().to_string(), "port_value": address.port() } })
}

/// Whether `name` (a `cluster.<name>.upstream_rq_total` counter's cluster) is one of the route
/// clusters, which count the HTTP requests (the others count tunnels).
pub(super) fn is_route_cluster(name: &str) -> bool {
    ["h1_", "h2_"].iter().any(|p| name.starts_with(p))
}

/// A running Envoy (killed by PID when dropped).
pub(super) struct Envoy {
    process: ChildGuard,
    workers: usize,
}

impl Envoy {
    /// Writes the bootstrap for `role` into `dir` (files named after `pod`) and starts `binary`
    /// in `pod` with `workers` worker threads; returns once its admin API says it is live.
    pub(super) fn start(binary: &Path, pod: &Pod, role: &Role, workers: usize, dir: &Path) -> anyhow::Result<Self> {
        let config = dir.join(format!("{}-bench.json", pod.name()));
        let access_log = dir.join(format!("{}-access.log", pod.name()));
        let text = serde_json::to_string_pretty(&bootstrap(role, &access_log)).context("the Envoy bootstrap")?;
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
        let config = bootstrap(&Role::Plain { upstream }, Path::new("/tmp/access.log"));
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

    fn waypoint_role() -> WaypointRole {
        WaypointRole {
            services: vec![(Protocol::Http1, "echo-h1.ns.svc.cluster.local:8080".into())],
            server: "10.1.0.7:8080".parse().unwrap(),
            server_identity: "spiffe://cluster.local/ns/ns/sa/default".into(),
            chain: "/run/wp.crt".into(),
            key: "/run/wp.key".into(),
            roots: "/run/ca.crt".into(),
        }
    }

    #[test]
    fn as_a_waypoint_envoy_terminates_hbone_routes_by_service_and_tunnels_to_the_server() {
        let config = bootstrap(&Role::Waypoint(waypoint_role()), Path::new("/tmp/access.log"));
        assert_eq!(config["bootstrap_extensions"][0]["name"], "envoy.bootstrap.internal_listener");
        let listeners = config["static_resources"]["listeners"].as_array().unwrap();
        let names: Vec<&str> = listeners.iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["connect_terminate", "main_internal", "connect_originate"]);

        // HBONE in: 15008, TLS 1.3 with a required client certificate, CONNECT into main_internal.
        let terminate = &listeners[0];
        assert_eq!(terminate["address"]["socket_address"]["port_value"], 15008);
        let tls = &terminate["filter_chains"][0]["transport_socket"]["typed_config"];
        assert_eq!(tls["require_client_certificate"], true);
        assert_eq!(tls["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"], "TLSv1_3");
        assert_eq!(tls["common_tls_context"]["alpn_protocols"], json!(["h2"]));
        let hcm = &terminate["filter_chains"][0]["filters"][0]["typed_config"];
        let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
        assert!(route["match"].get("connect_matcher").is_some());
        assert_eq!(route["route"]["cluster"], "main_internal");

        // The routes, by the service's authority (with and without the port).
        let hcm = &listeners[1]["filter_chains"][0]["filters"][0]["typed_config"];
        let host = &hcm["route_config"]["virtual_hosts"][0];
        assert_eq!(host["domains"], json!(["echo-h1.ns.svc.cluster.local:8080", "echo-h1.ns.svc.cluster.local"]));
        assert_eq!(host["routes"][0]["route"]["cluster"], "h1_header");
        assert_eq!(hcm["access_log"][0]["typed_config"]["path"], "/tmp/access.log");

        // HBONE out: CONNECT to the server, over TLS to its 15008 checking its identity.
        let originate = &listeners[2]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(originate["tunneling_config"]["hostname"], "10.1.0.7:8080");
        let clusters = config["static_resources"]["clusters"].as_array().unwrap();
        let by_name = |name: &str| clusters.iter().find(|c| c["name"] == name).unwrap();
        let address =
            |c: &Value| c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"].clone();
        assert_eq!(
            address(by_name("h1_default"))["envoy_internal_address"]["server_listener_name"],
            "connect_originate"
        );
        let hbone = by_name("hbone_upstream");
        assert_eq!(address(hbone)["socket_address"], json!({ "address": "10.1.0.7", "port_value": 15008 }));
        assert!(hbone.get("typed_extension_protocol_options").is_some(), "CONNECT over HTTP/2");
        let validation = &hbone["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"];
        assert_eq!(
            validation["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "spiffe://cluster.local/ns/ns/sa/default"
        );
        assert!(
            is_route_cluster("h1_default") && !is_route_cluster("hbone_upstream") && !is_route_cluster("main_internal")
        );
    }

    #[test]
    fn counters_are_read_from_the_text_stats() {
        let text = "cluster.h1_default.upstream_rq_total: 42\ncluster.h1_default.upstream_rq_time: P0(nan,1)\n";
        let counters = parse_counters(text);
        assert_eq!(counters.get("cluster.h1_default.upstream_rq_total"), Some(&42));
        assert_eq!(counters.len(), 1, "histograms are skipped");
    }
}
