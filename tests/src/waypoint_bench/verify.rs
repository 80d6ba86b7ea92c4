//! Proof that each path went through what it claims: the proxies' request counters and access
//! records, the node proxies' connection records, and the worker threads each proxy runs.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{
    Path, Protocol, envoy,
    load::{self, Mode},
    setup::{Bench, ENVOY_WAYPOINT, EWP, WAYPOINT, WP},
};
use crate::{Pod, Waypoint};

/// Requests per route in the warm-up.
const WARM_UP: u64 = 200;

/// The request counters of the three proxies at one moment.
pub(super) struct Counters {
    /// The waypoint's `/stats` `requests`.
    waypoint: u64,
    /// Per Envoy (the plain one, the waypoint), its route clusters' requests, by cluster.
    envoy: EnvoyCounters,
    envoy_waypoint: EnvoyCounters,
}

/// An Envoy's `upstream_rq_total` of its route clusters (the clusters of its tunnels count
/// tunnels, not requests), by cluster name.
#[derive(Default)]
struct EnvoyCounters(BTreeMap<String, u64>);

impl EnvoyCounters {
    fn read(envoy: &envoy::Envoy, pod: &Pod) -> anyhow::Result<Self> {
        let counters = envoy
            .counters(pod)?
            .into_iter()
            .filter_map(|(name, value)| {
                let cluster = name.strip_prefix("cluster.")?.strip_suffix(".upstream_rq_total")?;
                envoy::is_route_cluster(cluster).then(|| (cluster.to_owned(), value))
            })
            .collect();
        Ok(Self(counters))
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }

    fn cluster(&self, cluster: &str) -> u64 {
        self.0.get(cluster).copied().unwrap_or(0)
    }
}

impl Counters {
    pub(super) fn read(bench: &Bench) -> anyhow::Result<Self> {
        let stats = bench.waypoint.admin_get("/stats")?;
        let waypoint = stats["requests"].as_u64().with_context(|| format!("the waypoint's /stats: {stats}"))?;
        Ok(Self {
            waypoint,
            envoy: EnvoyCounters::read(&bench.envoy, &bench.envoy_pod)?,
            envoy_waypoint: EnvoyCounters::read(&bench.envoy_waypoint, &bench.envoy_waypoint_pod)?,
        })
    }

    fn envoy_of(&self, path: Path) -> &EnvoyCounters {
        match path {
            Path::EnvoyWaypoint => &self.envoy_waypoint,
            _ => &self.envoy,
        }
    }
}

/// Fails unless the proxy on `path` counted at least the `answered` requests between `before`
/// and `after`, and the other proxies counted none.
pub(super) fn proxied(
    path: Path,
    protocol: Protocol,
    before: &Counters,
    after: &Counters,
    answered: u64,
) -> anyhow::Result<()> {
    let counted = [
        (Path::Waypoint, "the waypoint", after.waypoint - before.waypoint),
        (Path::Envoy, "Envoy", after.envoy.total() - before.envoy.total()),
        (Path::EnvoyWaypoint, "the Envoy waypoint", after.envoy_waypoint.total() - before.envoy_waypoint.total()),
    ];
    for (proxy_path, proxy, count) in counted {
        if proxy_path == path && count < answered {
            bail!(
                "{path:?} {protocol:?}: {answered} requests answered but {proxy} counted only {count}: some bypassed it"
            );
        }
        if proxy_path != path && count > 0 {
            bail!("{path:?} {protocol:?}: {proxy} counted {count} requests it should never have seen");
        }
    }
    Ok(())
}

/// Warms every path up with `WARM_UP` requests per route, and checks the routes: through the
/// waypoint and the Envoys, requests with `x-bench-route: header` take the header route and the
/// others the default route.
pub(super) fn routes(bench: &Bench, protocol: Protocol) -> anyhow::Result<()> {
    for path in Path::ALL {
        let target = bench.target(protocol, path);
        let before = Counters::read(bench)?;
        let first_record = last_record_id(&bench.waypoint)?;
        for route in ["header", "default"] {
            let header = format!("x-bench-route: {route}");
            let extra = ["--header", header.as_str()];
            let args =
                load::args(&target.url, &target.authority, protocol, Mode::Count(WARM_UP), bench.options(), &extra);
            let summary = load::summary(target.client, &args)?;
            let ok = summary["statuses"]["200"].as_u64().unwrap_or(0);
            if ok != WARM_UP {
                bail!("warm-up {path:?} {protocol:?} ({route} route): {ok} of {WARM_UP} answered 200: {summary}");
            }
        }
        let after = Counters::read(bench)?;
        match path {
            Path::Waypoint => {
                let authority = bench.wp_service(protocol).authority();
                let records = bench.waypoint.requests(first_record)?;
                let taken = route_counts(&records, &authority);
                for route in ["header", "default"] {
                    if taken.get(route).copied().unwrap_or(0) != WARM_UP {
                        bail!("the waypoint's {route} route took not {WARM_UP} requests for {authority}: {taken:?}");
                    }
                }
            }
            Path::Envoy | Path::EnvoyWaypoint => {
                let (before, after) = (before.envoy_of(path), after.envoy_of(path));
                for route in ["header", "default"] {
                    let cluster = envoy::cluster(protocol, route);
                    let taken = after.cluster(&cluster) - before.cluster(&cluster);
                    if taken != WARM_UP {
                        bail!(
                            "{path:?}: Envoy's {route} route (cluster {cluster}) took {taken} requests, not {WARM_UP}"
                        );
                    }
                }
            }
            Path::Direct | Path::Mesh => proxied(path, protocol, &before, &after, 0)?,
        }
    }
    println!(
        "[warm-up] {protocol:?}: every path answered; header and default routes taken by the waypoint and both Envoys"
    );
    Ok(())
}

/// The id of the newest access record the waypoint holds (0: none).
fn last_record_id(waypoint: &Waypoint) -> anyhow::Result<u64> {
    let stats = waypoint.admin_get("/stats")?;
    // Every finished request gets a record and a count; ids start at 1.
    stats["requests"].as_u64().with_context(|| format!("the waypoint's /stats: {stats}"))
}

/// Requests per route name among the waypoint's access records for `authority`.
fn route_counts(records: &[Value], authority: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in records.iter().filter(|r| r["authority"] == authority) {
        *counts.entry(record["routeName"].as_str().unwrap_or("-").to_owned()).or_default() += 1;
    }
    counts
}

/// Waits (bounded) until the waypoint's route table for every host holds the benchmark's two
/// routes (`/config_dump` lists each table's HTTP route names per port).
pub(super) fn wait_waypoint_config(waypoint: &Waypoint, hosts: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dump = waypoint.admin_get("/config_dump")?;
        if hosts.iter().all(|h| has_bench_routes(&dump["snapshot"]["routeTables"][h.as_str()])) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the waypoint has no header and default routes for {hosts:?} after 15 s; its tables: {}\n{}",
                dump["snapshot"]["routeTables"],
                waypoint.log_tail_block(30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_bench_routes(table: &Value) -> bool {
    let ports = table["ports"].as_array().map(Vec::as_slice).unwrap_or_default();
    ports.iter().any(|p| p["httpRoutes"] == serde_json::json!(["header", "default"]))
}

/// Checks the node proxy records of every client (node 0).
pub(super) fn connection_records(bench: &Bench) -> anyhow::Result<()> {
    let node = bench.cluster.node(0);
    let outbound_of = |pod: &Pod| -> anyhow::Result<Vec<Value>> {
        let records = node.admin_get("/connections")?;
        let records = records.as_array().context("/connections is not an array")?;
        Ok(records.iter().filter(|r| r["direction"] == "outbound" && r["pod"]["name"] == pod.name()).cloned().collect())
    };
    let direct = outbound_of(&bench.direct.client)?;
    if !direct.is_empty() {
        bail!("the direct client's traffic was captured: {}", direct[0]);
    }
    let (waypoint, envoy_waypoint) = (format!("{WP}/{WAYPOINT}"), format!("{EWP}/{ENVOY_WAYPOINT}"));
    let clients = [
        (&bench.mesh.client, None),
        (&bench.wp.client, Some(waypoint.as_str())),
        (&bench.ewp.client, Some(envoy_waypoint.as_str())),
    ];
    for (pod, through) in clients {
        // Records are written when connections close, just after the last load ended.
        let deadline = Instant::now() + Duration::from_secs(5);
        let records = loop {
            let records = outbound_of(pod)?;
            if !records.is_empty() || Instant::now() >= deadline {
                break records;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if records.is_empty() {
            bail!("node-0's proxy recorded no connection from {}: was it captured?", pod.name());
        }
        for record in &records {
            if record["transport"] != "hbone" || record["waypoint"].as_str() != through {
                bail!(
                    "a connection of {} was not carried as measured (HBONE, waypoint {through:?}): {record}",
                    pod.name()
                );
            }
        }
        println!(
            "[check] {}: {} connections, all HBONE{}",
            pod.name(),
            records.len(),
            through.map(|w| format!(" through waypoint {w}")).unwrap_or_default()
        );
    }
    println!("[check] {}: never captured (no connection record)", bench.direct.client.name());
    Ok(())
}

/// The waypoint's worker threads (`waypoint-wrk-N`). By default it runs one per CPU the process
/// may run on (`available_parallelism`: its affinity, and no CPU quota in the harness's cgroups):
/// counted from its threads and cross-checked against its affinity.
pub(super) fn waypoint_workers(pid: u32) -> anyhow::Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("no Cpus_allowed_list in the waypoint's /proc status")?;
    let cpus = count_cpus(list.trim()).with_context(|| format!("Cpus_allowed_list {list:?}"))?;
    let threads = threads_named(pid, |name| name.starts_with("waypoint-wrk-"))?;
    if threads != cpus {
        bail!("the waypoint (pid {pid}) may use {cpus} CPUs but runs {threads} worker threads");
    }
    Ok(threads)
}

/// Envoy's worker threads (`wrk:worker_N`).
pub(super) fn envoy_workers(pid: u32) -> anyhow::Result<usize> {
    threads_named(pid, |name| name.starts_with("wrk:worker"))
}

fn threads_named(pid: u32, pred: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let dir = format!("/proc/{pid}/task");
    let mut count = 0;
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let name = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        count += usize::from(pred(name.trim()));
    }
    Ok(count)
}

/// CPUs in a list like `0-3,6,8-9`.
fn count_cpus(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |total, part| {
        let n = match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => part.parse::<usize>().map(|_| 1).ok()?,
        };
        Some(total + n)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_route_table_must_hold_both_routes_in_order() {
        let table = json!({"virtualService": "bench-wp/echo-h1", "ports": [{"port": 8080, "httpRoutes": ["header", "default"]}]});
        assert!(has_bench_routes(&table));
        assert!(!has_bench_routes(&json!({"ports": [{"port": 8080, "httpRoutes": ["default"]}]})));
        assert!(!has_bench_routes(&Value::Null));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpus("x"), None);
    }

    #[test]
    fn routes_are_counted_per_authority() {
        let records = [
            json!({"authority": "a:1", "routeName": "header"}),
            json!({"authority": "a:1", "routeName": "default"}),
            json!({"authority": "a:1", "routeName": "default"}),
            json!({"authority": "b:1", "routeName": "header"}),
        ];
        let counts = route_counts(&records, "a:1");
        assert_eq!(counts, BTreeMap::from([("default".to_owned(), 2), ("header".to_owned(), 1)]));
    }

    fn counters(waypoint: u64, envoy: u64) -> Counters {
        counters3(waypoint, envoy, 0)
    }

    fn counters3(waypoint: u64, envoy: u64, envoy_waypoint: u64) -> Counters {
        let envoy_counters = |n: u64| EnvoyCounters(BTreeMap::from([("h1_default".to_owned(), n)]));
        Counters { waypoint, envoy: envoy_counters(envoy), envoy_waypoint: envoy_counters(envoy_waypoint) }
    }

    #[test]
    fn only_the_proxy_on_the_path_may_count_and_it_must_count_everything() {
        let before = counters(10, 20);
        assert!(proxied(Path::Waypoint, Protocol::Http1, &before, &counters(110, 20), 100).is_ok());
        assert!(proxied(Path::Waypoint, Protocol::Http1, &before, &counters(109, 20), 100).is_err(), "bypassed");
        assert!(proxied(Path::Waypoint, Protocol::Http1, &before, &counters(110, 21), 100).is_err(), "Envoy too");
        assert!(proxied(Path::Envoy, Protocol::H2c, &before, &counters(10, 120), 100).is_ok());
        assert!(proxied(Path::Mesh, Protocol::H2c, &before, &counters(10, 20), 100).is_ok());
        assert!(proxied(Path::Direct, Protocol::H2c, &before, &counters(11, 20), 100).is_err());
        let before = counters3(10, 20, 30);
        assert!(proxied(Path::EnvoyWaypoint, Protocol::Http1, &before, &counters3(10, 20, 130), 100).is_ok());
        assert!(proxied(Path::EnvoyWaypoint, Protocol::Http1, &before, &counters3(10, 20, 129), 100).is_err());
        assert!(proxied(Path::EnvoyWaypoint, Protocol::Http1, &before, &counters3(10, 21, 130), 100).is_err());
        assert!(
            proxied(Path::Envoy, Protocol::Http1, &before, &counters3(10, 120, 31), 100).is_err(),
            "the other Envoy"
        );
        assert!(proxied(Path::Mesh, Protocol::Http1, &before, &counters3(10, 20, 31), 100).is_err());
    }
}
