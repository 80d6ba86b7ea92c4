//! The waypoint, end to end: Istio's bookinfo routing (the seeds in
//! `common/tests/fixtures/bookinfo`) applied by a real `waypoint` process in its own pod, with
//! client pods' traffic captured by eBPF, tunnelled by the source node's proxy to the waypoint
//! over HBONE and from the waypoint to the chosen endpoint through the destination node's proxy.
//! Real HTTP/1.1, HTTP/2 (h2c) and gRPC clients and servers (`ambit-httpapp`). Root required.
//!
//! Rates (splits, fault percentages) are checked against binomial tolerances of several standard
//! deviations, so a correct waypoint fails them with negligible probability; nothing here
//! asserts a duration.

mod support;

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use ambit_e2e::{App, Cluster, Pod, PodOptions, ServiceSpec, Waypoint, WaypointOptions, require_root};
use serde_json::Value;
use support::*;

const NS: &str = "bookinfo";
const PORT: u16 = 9080;
const VIRTUAL_SERVICES: &str = include_str!("../../common/tests/fixtures/bookinfo/virtual-services.yaml");
const DESTINATION_RULES: &str = include_str!("../../common/tests/fixtures/bookinfo/destination-rules.yaml");

/// `bookinfo.com` in front of reviews and ratings (the seeds' `bookinfo` VirtualService): a host
/// that is no Kubernetes Service, so a ServiceEntry gives it an address the mesh captures.
const BOOKINFO_COM: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bookinfo-com
  namespace: bookinfo
spec:
  hosts: [bookinfo.com]
  addresses: [10.96.10.50]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  resolution: STATIC
";
const BOOKINFO_COM_ADDR: &str = "10.96.10.50:80";

/// A bookinfo namespace bound to its waypoint (on node 0, with the client), the servers on node 1.
struct Bookinfo {
    waypoint: Waypoint,
    client: Pod,
    /// Pod name → (pod, its server).
    servers: BTreeMap<String, (Pod, App)>,
    reviews: ServiceSpec,
    ratings: ServiceSpec,
    details: ServiceSpec,
    /// Last: dropped after the processes above, it removes the whole run.
    cluster: Cluster,
}

/// The bookinfo pods: (service, version, replicas).
const PODS: &[(&str, &str, usize)] = &[
    ("reviews", "v1", 1),
    ("reviews", "v2", 2),
    ("reviews", "v3", 2),
    ("ratings", "v1", 1),
    ("ratings", "v2", 1),
    ("details", "v1", 1),
];

impl Bookinfo {
    fn start() -> Self {
        require_root();
        let cluster = Cluster::builder()
            .nodes(2)
            .control_plane(true)
            .namespace(NS, &[AMBIENT, ("istio.io/use-waypoint", "waypoint")])
            .build()
            .expect("local cluster with a control plane starts");
        let waypoint = cluster.add_waypoint(WaypointOptions::new(NS, "waypoint").node(0)).expect("the waypoint starts");
        let client = cluster
            .add_pod(PodOptions::new("productpage", NS).node(0).service_account("bookinfo-productpage"))
            .expect("client pod");
        let mut servers = BTreeMap::new();
        for &(service, version, replicas) in PODS {
            for i in 0..replicas {
                let name =
                    if replicas == 1 { format!("{service}-{version}") } else { format!("{service}-{version}-{i}") };
                let pod = cluster
                    .add_pod(
                        PodOptions::new(&name, NS)
                            .node(1)
                            .service_account(&format!("bookinfo-{service}"))
                            .labels(&[("app", service), ("version", version)]),
                    )
                    .expect("server pod");
                let app = pod
                    .spawn_httpapp(&["serve", "--listen", &format!("0.0.0.0:{PORT}"), "--name", &name])
                    .expect("server starts");
                servers.insert(name, (pod, app));
            }
        }
        let pods_of = |service: &str| -> Vec<&Pod> {
            servers.values().map(|(pod, _)| pod).filter(|p| p.name().starts_with(&format!("{service}-"))).collect()
        };
        let reviews = ServiceSpec::new(NS, "reviews", Ipv4Addr::new(10, 96, 10, 13), PORT).app_protocol("http");
        let ratings = ServiceSpec::new(NS, "ratings", Ipv4Addr::new(10, 96, 10, 12), PORT).app_protocol("http");
        let details = ServiceSpec::new(NS, "details", Ipv4Addr::new(10, 96, 10, 11), PORT).app_protocol("http");
        for service in [&reviews, &ratings, &details] {
            let name = service.authority();
            let name = name.split('.').next().unwrap().to_owned();
            cluster.add_service(service, &pods_of(&name)).expect("service applied");
        }
        cluster
            .apply(
                "bookinfo-routing.yaml",
                &format!("{VIRTUAL_SERVICES}\n---\n{DESTINATION_RULES}\n---\n{BOOKINFO_COM}"),
                &[
                    ("VirtualService", NS, "reviews"),
                    ("VirtualService", NS, "ratings"),
                    ("VirtualService", NS, "details"),
                    ("VirtualService", NS, "bookinfo"),
                    ("DestinationRule", NS, "reviews"),
                    ("DestinationRule", NS, "ratings"),
                    ("ServiceEntry", NS, "bookinfo-com"),
                ],
            )
            .expect("bookinfo routing applied");
        wait_waypoint_config(&waypoint, &["reviews.bookinfo.svc.cluster.local", "bookinfo.com"]);
        Self { cluster, waypoint, client, servers, reviews, ratings, details }
    }

    /// Runs `ambit-httpapp load` in the client pod; its summary (and per-request events with `--each`).
    fn load(&self, args: &[&str]) -> (Value, Vec<Value>) {
        load(&self.client, args)
    }

    /// The requests `pod`'s server has received so far.
    fn received(&self, pod: &str) -> Vec<Value> {
        let (_, app) = self.servers.get(pod).unwrap_or_else(|| panic!("no server {pod}"));
        app.events().into_iter().filter(|e| e["event"] == "request").collect()
    }
}

fn load(client: &Pod, args: &[&str]) -> (Value, Vec<Value>) {
    let events = client.run_httpapp(&[&["load"], args].concat()).unwrap_or_else(|e| panic!("load {args:?}: {e:#}"));
    let summary = events.iter().find(|e| e["event"] == "summary").cloned().expect("a summary event");
    let responses = events.into_iter().filter(|e| e["event"] == "response").collect();
    (summary, responses)
}

fn count(summary: &Value, field: &str, key: &str) -> u64 {
    summary[field][key].as_u64().unwrap_or(0)
}

/// Responses served by pods whose name starts with `prefix` (e.g. every `reviews-v2-` replica).
fn served_by(summary: &Value, prefix: &str) -> u64 {
    let served = summary["servedBy"].as_object().into_iter().flatten();
    served.filter(|(pod, _)| pod.starts_with(prefix)).filter_map(|(_, n)| n.as_u64()).sum()
}

/// Waits until the waypoint serves route tables for every host in `hosts`.
fn wait_waypoint_config(waypoint: &Waypoint, hosts: &[&str]) {
    wait_for(Duration::from_secs(15), "the waypoint's route tables", || {
        let dump = waypoint.admin_get("/config_dump")?.to_string();
        Ok(hosts.iter().all(|h| dump.contains(h)).then_some(()))
    });
}

/// Binomial check: `observed` successes of `n` trials at probability `p`, within 6 standard
/// deviations (a false alarm about once in 10⁹ runs).
fn assert_rate(what: &str, observed: u64, n: u64, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let slack = (6.0 * sd).max(3.0);
    assert!(
        (observed as f64 - mean).abs() <= slack,
        "{what}: {observed} of {n}, expected {mean:.0} ± {slack:.0} (p = {p})"
    );
}

#[test]
fn header_match_routes_jason_to_v2_and_everyone_else_to_v3_with_a_shadow_copy_to_v1() {
    let bookinfo = Bookinfo::start();
    let url = format!("http://{}/reviews/0", bookinfo.reviews.address());
    let authority = bookinfo.reviews.authority();
    for protocol in ["http1", "h2c"] {
        let cases = [
            ("end-user: jason", "reviews-v2-", "end-user jason goes to v2"),
            ("end-user: someone-else", "reviews-v3-", "everyone else goes to v3"),
        ];
        for (header, pods, what) in cases {
            let (summary, _) = bookinfo.load(&[
                "--url",
                &url,
                "--authority",
                &authority,
                "--protocol",
                protocol,
                "--count",
                "100",
                "--concurrency",
                "4",
                "--header",
                header,
            ]);
            assert_eq!(served_by(&summary, pods), 100, "{protocol}: {what}: {summary}");
        }
    }
    // v3's traffic is mirrored to v1: 200 copies, each with the "-shadow" host, none of them
    // answered to the client (no response above came from v1).
    let shadows = wait_for(Duration::from_secs(20), "200 mirrored copies at reviews-v1", || {
        let received = bookinfo.received("reviews-v1");
        Ok((received.len() >= 200).then_some(received))
    });
    assert_eq!(shadows.len(), 200, "exactly one copy per v3 request");
    for request in &shadows {
        let authority = request["authority"].as_str().unwrap_or_default();
        assert!(
            authority.starts_with("reviews.bookinfo.svc.cluster.local-shadow"),
            "a mirrored copy carries the -shadow host: {request}"
        );
    }
    // The waypoint says what it did: the routes by name, over both protocols.
    let records = bookinfo.waypoint.requests(0).expect("waypoint /requests");
    let routes: BTreeMap<String, usize> = records.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(format!("{} {}", r["routeName"].as_str().unwrap_or("?"), r["protocol"].as_str().unwrap_or("?")))
            .or_default() += 1;
        m
    });
    assert_eq!(routes.get("jason HTTP/1.1"), Some(&100), "{routes:?}");
    assert_eq!(routes.get("jason HTTP/2"), Some(&100), "{routes:?}");
    assert_eq!(routes.get("everyone-else HTTP/1.1"), Some(&100), "{routes:?}");
    assert_eq!(routes.get("everyone-else HTTP/2"), Some(&100), "{routes:?}");
    // And its log has the same as access lines (written in batches, at least once a second),
    // plain text in a file: no colour escapes.
    let jason = wait_for(Duration::from_secs(10), "the access lines of jason's 200 requests", || {
        let log = bookinfo.waypoint.log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(" INFO access: request id=") && l.contains(" route=\"jason\" "))
            .map(str::to_owned)
            .collect();
        Ok((lines.len() >= 200).then_some(lines))
    });
    assert_eq!(jason.len(), 200, "one line per request");
    for protocol in ["HTTP/1.1", "HTTP/2"] {
        let line = jason.iter().find(|l| l.contains(&format!(" protocol=\"{protocol}\" "))).expect(protocol);
        for field in [" method=GET ", " path=/reviews/0 ", " code=200 ", " flags=- ", " attempts=1 "] {
            assert!(line.contains(field), "{field:?} in {line}");
        }
        assert!(line.contains(&format!(" authority={authority} ")), "{line}");
    }
    assert!(!bookinfo.waypoint.log().contains('\u{1b}'), "no ANSI escapes in a log file");
}

#[test]
fn ratings_split_75_25_with_a_rare_delay_fault() {
    let bookinfo = Bookinfo::start();
    let url = format!("http://{}/ratings/0", bookinfo.ratings.address());
    let n = 4000u64;
    let (summary, _) = bookinfo.load(&[
        "--url",
        &url,
        "--authority",
        &bookinfo.ratings.authority(),
        "--count",
        &n.to_string(),
        "--concurrency",
        "16",
        "--deadline-ms",
        "110000",
    ]);
    assert_eq!(count(&summary, "statuses", "200"), n, "every request answered: {summary}");
    assert_rate("ratings v1 share", count(&summary, "servedBy", "ratings-v1"), n, 0.75);
    assert_eq!(served_by(&summary, "ratings-"), n);
    // 0.1 % of requests are delayed by 5 s (flag DI), the rest are not.
    let records = bookinfo.waypoint.requests(0).expect("waypoint /requests");
    let ratings: Vec<&Value> = records.iter().filter(|r| r["authority"] == bookinfo.ratings.authority()).collect();
    assert_eq!(ratings.len() as u64, n, "one access record per request");
    let delayed: Vec<&&Value> = ratings.iter().filter(|r| flags(r).contains("DI")).collect();
    assert_rate("delay fault share", delayed.len() as u64, n, 0.001);
    for r in &delayed {
        assert!(r["durationMs"].as_u64().unwrap_or(0) >= 5000, "a DI request waited its 5 s: {r}");
    }
}

fn flags(record: &Value) -> String {
    record["responseFlags"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn path_prefixes_reach_their_services_and_half_of_ratings_is_aborted() {
    let bookinfo = Bookinfo::start();
    let reviews_url = format!("http://{BOOKINFO_COM_ADDR}/reviews/1");
    let (reviews, _) =
        bookinfo.load(&["--url", &reviews_url, "--authority", "bookinfo.com", "--count", "50", "--concurrency", "4"]);
    assert_eq!(count(&reviews, "statuses", "200"), 50, "{reviews}");
    let served = served_by(&reviews, "reviews-");
    assert_eq!(served, 50, "/reviews reaches the reviews service: {reviews}");

    let n = 1000u64;
    let ratings_url = format!("http://{BOOKINFO_COM_ADDR}/ratings/1");
    let (ratings, _) = bookinfo.load(&[
        "--url",
        &ratings_url,
        "--authority",
        "bookinfo.com",
        "--count",
        &n.to_string(),
        "--concurrency",
        "8",
    ]);
    let aborted = count(&ratings, "statuses", "400");
    assert_rate("abort fault share", aborted, n, 0.5);
    let served = served_by(&ratings, "ratings-");
    assert_eq!(served + aborted, n, "every request is aborted or served by ratings: {ratings}");
    let records = bookinfo.waypoint.requests(0).expect("waypoint /requests");
    let fi = records.iter().filter(|r| r["responseCode"] == 400 && flags(r).contains("FI")).count() as u64;
    assert_eq!(fi, aborted, "each abort is recorded with flag FI");
    // Everything else is not found (NR): bookinfo.com routes only /reviews and /ratings.
    let (other, _) = bookinfo.load(&[
        "--url",
        &format!("http://{BOOKINFO_COM_ADDR}/details"),
        "--authority",
        "bookinfo.com",
        "--count",
        "1",
    ]);
    assert_eq!(count(&other, "statuses", "404"), 1, "{other}");
}

#[test]
fn details_retries_three_times_within_per_try_timeouts() {
    let bookinfo = Bookinfo::start();
    let url = format!("http://{}/details/0", bookinfo.details.address());
    let authority = bookinfo.details.authority();
    // Two failures then success: answered 200 after 3 tries, all 3 seen by the upstream.
    let (ok, _) = bookinfo.load(&[
        "--url",
        &url,
        "--authority",
        &authority,
        "--count",
        "1",
        "--header",
        "x-httpapp-fail-first: 2",
        "--header",
        "x-httpapp-key: twice",
    ]);
    assert_eq!(count(&ok, "statuses", "200"), 1, "{ok}");
    let tries =
        |key: &str| bookinfo.received("details-v1").iter().filter(|r| r["headers"]["x-httpapp-key"] == key).count();
    assert_eq!(tries("twice"), 3, "1 try + 2 retries reach the upstream");
    // Always failing: 1 try + 3 retries, then the last 503 is returned (URX).
    let (failed, _) = bookinfo.load(&[
        "--url",
        &url,
        "--authority",
        &authority,
        "--count",
        "1",
        "--header",
        "x-httpapp-fail-first: 100",
        "--header",
        "x-httpapp-key: always",
    ]);
    assert_eq!(count(&failed, "statuses", "503"), 1, "{failed}");
    assert_eq!(tries("always"), 4, "attempts: 3 means at most 4 tries");
    let records = bookinfo.waypoint.requests(0).expect("waypoint /requests");
    let last = records.iter().rev().find(|r| r["authority"] == authority).expect("a details record");
    assert!(flags(last).contains("URX"), "retries exhausted: {last}");
    assert_eq!(last["attempts"], 4, "{last}");
    // A slow upstream: each try is cut at the 2 s perTryTimeout (504 UT), never waiting the
    // upstream's 3 s.
    let (slow, _) = bookinfo.load(&[
        "--url",
        &url,
        "--authority",
        &authority,
        "--count",
        "1",
        "--header",
        "x-httpapp-delay-ms: 3000",
        "--header",
        "x-httpapp-key: slow",
    ]);
    assert_eq!(count(&slow, "statuses", "504"), 1, "{slow}");
    let records = bookinfo.waypoint.requests(0).expect("waypoint /requests");
    let last = records.iter().rev().find(|r| r["authority"] == authority).expect("a details record");
    assert!(flags(last).contains("UT"), "upstream timeout: {last}");
    assert!(tries("slow") >= 1, "the slow request reached the upstream");
}

#[test]
fn round_robin_alternates_and_random_does_not() {
    let bookinfo = Bookinfo::start();
    let url = format!("http://{}/reviews/lb", bookinfo.reviews.address());
    let authority = bookinfo.reviews.authority();
    // v2 (jason) is ROUND_ROBIN over its two pods: one worker, so requests are sequential and
    // must alternate.
    let (_, each) = bookinfo.load(&[
        "--url",
        &url,
        "--authority",
        &authority,
        "--count",
        "40",
        "--header",
        "end-user: jason",
        "--each",
    ]);
    let order: Vec<String> = each.iter().map(|e| e["servedBy"].as_str().unwrap_or("?").to_owned()).collect();
    assert!(order.windows(2).all(|w| w[0] != w[1]), "round robin alternates: {order:?}");
    // v3 is RANDOM (the rule-level policy): both pods serve, in no fixed alternation.
    let n = 400u64;
    let (summary, each) =
        bookinfo.load(&["--url", &url, "--authority", &authority, "--count", &n.to_string(), "--each"]);
    assert_rate("random share of reviews-v3-0", count(&summary, "servedBy", "reviews-v3-0"), n, 0.5);
    let order: Vec<&str> = each.iter().map(|e| e["servedBy"].as_str().unwrap_or("?")).collect();
    let repeats = order.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(repeats > 0, "RANDOM picks the same pod twice in a row sometimes (400 requests)");
}

#[test]
fn a_pod_bypassing_the_waypoint_is_refused_by_the_destination_node_proxy() {
    let bookinfo = Bookinfo::start();
    let (target, _) = &bookinfo.servers["reviews-v1"];
    let direct = format!("http://{}:{PORT}/direct", target.ip());
    let (summary, _) = bookinfo.load(&["--url", &direct, "--count", "1", "--timeout-ms", "5000"]);
    assert_eq!(count(&summary, "statuses", "200"), 0, "no answer from behind the waypoint: {summary}");
    assert!(bookinfo.received("reviews-v1").iter().all(|r| r["path"] != "/direct"), "the app never saw it");
    let record = record(bookinfo.cluster.node(1), "the refused inbound connection", |r| {
        r["direction"] == "inbound" && r["pod"]["name"] == "reviews-v1" && r["outcome"] == "denied"
    });
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("waypoint"), "the record says why: {record}");
    // Through the service (and so the waypoint) the same pod is reachable: mirror copies arrive.
    let (ok, _) = bookinfo.load(&[
        "--url",
        &format!("http://{}/via", bookinfo.reviews.address()),
        "--authority",
        &bookinfo.reviews.authority(),
        "--count",
        "5",
    ]);
    assert_eq!(count(&ok, "statuses", "200"), 5, "{ok}");
}

/// A namespace bound to its waypoint (node 0, with the client) and one service `echo` whose
/// pods (`names`, on node 1) all serve `protocol`, plus `routing` (Istio YAML) applied.
struct Echo {
    waypoint: Waypoint,
    client: Pod,
    servers: BTreeMap<String, (Pod, App)>,
    service: ServiceSpec,
    /// Last: dropped after the processes above, it removes the whole run.
    cluster: Cluster,
}

impl Echo {
    fn start(pods: &[(&str, &str)], protocol: &str, routing: &str, objects: &[(&str, &str, &str)]) -> Self {
        require_root();
        let cluster = Cluster::builder()
            .nodes(2)
            .control_plane(true)
            .namespace(NS, &[AMBIENT, ("istio.io/use-waypoint", "waypoint")])
            .build()
            .expect("local cluster with a control plane starts");
        let waypoint = cluster.add_waypoint(WaypointOptions::new(NS, "waypoint").node(0)).expect("the waypoint starts");
        let client = cluster
            .add_pod(PodOptions::new("client", NS).node(0).service_account("client").labels(&[("app", "client")]))
            .expect("client");
        let serve_protocol = if protocol == "grpc" { "grpc" } else { "http" };
        let mut servers = BTreeMap::new();
        for &(name, version) in pods {
            let pod = cluster
                .add_pod(
                    PodOptions::new(name, NS)
                        .node(1)
                        .service_account("echo")
                        .labels(&[("app", "echo"), ("version", version)]),
                )
                .expect("server pod");
            let listen = format!("0.0.0.0:{PORT}");
            let app = pod
                .spawn_httpapp(&["serve", "--listen", &listen, "--name", name, "--protocol", serve_protocol])
                .unwrap();
            servers.insert(name.to_owned(), (pod, app));
        }
        let service = ServiceSpec::new(NS, "echo", Ipv4Addr::new(10, 96, 20, 1), PORT).app_protocol(protocol);
        let endpoints: Vec<&Pod> = servers.values().map(|(p, _)| p).collect();
        cluster.add_service(&service, &endpoints).expect("service applied");
        if !routing.is_empty() {
            cluster.apply("echo-routing.yaml", routing, objects).expect("routing applied");
        }
        wait_waypoint_config(&waypoint, &["echo.bookinfo.svc.cluster.local"]);
        Self { waypoint, client, servers, service, cluster }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.service.address())
    }

    fn load(&self, args: &[&str]) -> (Value, Vec<Value>) {
        let authority = self.service.authority();
        load(&self.client, &[&["--authority", authority.as_str()], args].concat())
    }

    fn received(&self, pod: &str) -> usize {
        let (_, app) = self.servers.get(pod).unwrap_or_else(|| panic!("no server {pod}"));
        app.events().iter().filter(|e| e["event"] == "request").count()
    }
}

#[test]
fn circuit_breaking_sheds_load_with_503_uo() {
    let rule = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: bookinfo}
spec:
  host: echo
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
";
    let echo = Echo::start(&[("echo-0", "v1")], "http", rule, &[("DestinationRule", NS, "echo")]);
    // Eight requests at once, each held 500 ms by the upstream: one connection, one request
    // waiting for it, and the rest overflow.
    let (summary, _) = echo.load(&[
        "--url",
        &echo.url("/slow"),
        "--count",
        "16",
        "--concurrency",
        "8",
        "--header",
        "x-httpapp-delay-ms: 500",
    ]);
    let (ok, shed) = (count(&summary, "statuses", "200"), count(&summary, "statuses", "503"));
    assert!(ok >= 2 && shed >= 1 && ok + shed == 16, "some served, some shed: {summary}");
    let records = echo.waypoint.requests(0).expect("waypoint /requests");
    let overflowed: Vec<&Value> = records.iter().filter(|r| r["responseCode"] == 503).collect();
    assert_eq!(overflowed.len() as u64, shed, "{records:?}");
    for r in overflowed {
        assert!(flags(r).contains("UO"), "a shed request is flagged UO (upstream overflow): {r}");
    }
    assert!(echo.received("echo-0") as u64 >= ok, "the served requests reached the upstream");
}

#[test]
fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back() {
    let rule = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: bookinfo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 3s
      maxEjectionPercent: 100
";
    let echo =
        Echo::start(&[("echo-good", "v1"), ("echo-bad", "v1")], "http", rule, &[("DestinationRule", NS, "echo")]);
    let fail_bad = "x-httpapp-fail-on: echo-bad";
    // echo-bad answers 503 to everything: after 3 in a row it is ejected, and then a batch of
    // requests never reaches it.
    wait_for(Duration::from_secs(30), "echo-bad ejected (a batch that never reaches it)", || {
        let before = echo.received("echo-bad");
        echo.load(&["--url", &echo.url("/outlier"), "--count", "10", "--header", fail_bad]);
        Ok((echo.received("echo-bad") == before).then_some(()))
    });
    let (summary, _) = echo.load(&["--url", &echo.url("/outlier"), "--count", "20", "--header", fail_bad]);
    assert_eq!(count(&summary, "statuses", "200"), 20, "while echo-bad is ejected, echo-good serves all: {summary}");
    // After baseEjectionTime it comes back and serves again.
    wait_for(Duration::from_secs(30), "echo-bad back in rotation", || {
        let (summary, _) = echo.load(&["--url", &echo.url("/back"), "--count", "4"]);
        Ok((count(&summary, "servedBy", "echo-bad") > 0).then_some(()))
    });
}

#[test]
fn passthrough_spreads_over_every_endpoint_as_kube_proxy_would_even_an_ejected_one() {
    // PASSTHROUGH is "no load balancing: the address the client used". The client used the
    // service VIP, which the waypoint resolves as kube-proxy would: any endpoint, at random, with
    // no regard to outlier detection (one 5xx would eject echo-bad under any other policy).
    let rule = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: bookinfo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 120s
      maxEjectionPercent: 100
";
    let echo =
        Echo::start(&[("echo-good", "v1"), ("echo-bad", "v1")], "http", rule, &[("DestinationRule", NS, "echo")]);
    let fail_bad = "x-httpapp-fail-on: echo-bad";
    let (first, _) = echo.load(&["--url", &echo.url("/first"), "--count", "30", "--header", fail_bad]);
    assert!(echo.received("echo-bad") > 0, "echo-bad is chosen: {first}");
    let before = (echo.received("echo-good"), echo.received("echo-bad"));
    let (second, _) = echo.load(&["--url", &echo.url("/second"), "--count", "60", "--header", fail_bad]);
    let after = (echo.received("echo-good"), echo.received("echo-bad"));
    assert!(after.0 > before.0, "echo-good keeps serving: {second}");
    assert!(after.1 > before.1, "echo-bad, failing, is still chosen (no ejection under PASSTHROUGH): {second}");
    // The default retry policy retries its 503s, on the other pod when the pick allows.
    assert!(count(&second, "statuses", "200") > 30, "most requests end at echo-good: {second}");
    let records = echo.waypoint.requests(0).expect("waypoint /requests");
    assert!(
        records.iter().all(|r| r["responseFlags"] != "UH"),
        "no request is refused for want of an endpoint: {records:?}"
    );
}

#[test]
fn a_websocket_upgrade_is_routed_then_relayed_both_ways_until_each_side_ends() {
    let routing = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: bookinfo}
spec:
  hosts: [echo]
  http:
  - name: websocket
    match:
    - uri: {prefix: /ws}
    headers:
      request:
        set: {x-routed-by: websocket-route}
    route:
    - destination: {host: echo}
  - name: default
    route:
    - destination: {host: echo}
";
    let echo = Echo::start(&[("echo-0", "v1")], "http", routing, &[("VirtualService", NS, "echo")]);
    let authority = echo.service.authority();
    // 256 KiB each way: more than any socket or HTTP/2 window holds, so both directions stream.
    let events = echo
        .client
        .run_httpapp(&["upgrade", "--url", &echo.url("/ws/chat"), "--authority", &authority, "--bytes", "262144"])
        .expect("the upgrade client runs");
    let result = events.iter().find(|e| e["event"] == "upgrade").unwrap_or_else(|| panic!("no result: {events:?}"));
    assert_eq!(result["status"], 101, "the upstream's 101 reaches the client: {result}");
    assert_eq!(result["headers"]["upgrade"], "websocket", "{result}");
    assert_eq!(result["headers"]["connection"], "upgrade", "{result}");
    assert_eq!(result["servedBy"], "echo-0", "{result}");
    assert_eq!(
        (result["echoedBytes"].as_u64(), &result["echoIntact"]),
        (Some(262_144), &Value::Bool(true)),
        "{result}"
    );

    let (_, server) = &echo.servers["echo-0"];
    let upgrade =
        server.wait_for(|e| e["event"] == "upgrade", Duration::from_secs(10)).expect("server saw the upgrade");
    assert_eq!(upgrade["headers"]["x-routed-by"], "websocket-route", "the route's header operation applied: {upgrade}");
    // The client's half-close reached the server, which then ended its side.
    let closed = server
        .wait_for(|e| e["event"] == "upgrade-closed", Duration::from_secs(10))
        .expect("server saw the client end");
    assert_eq!(closed["echoedBytes"], 262_144, "{closed}");

    let records = echo.waypoint.requests(0).expect("waypoint /requests");
    let record = records.iter().find(|r| r["path"] == "/ws/chat").unwrap_or_else(|| panic!("no record: {records:?}"));
    assert_eq!(
        (&record["responseCode"], &record["routeName"]),
        (&Value::from(101), &Value::from("websocket")),
        "{record}"
    );
    // Ordinary requests still go through afterwards.
    let (summary, _) = echo.load(&["--url", &echo.url("/plain"), "--count", "5"]);
    assert_eq!(count(&summary, "statuses", "200"), 5, "{summary}");
}

#[test]
fn grpc_routes_by_metadata_and_retries_unavailable() {
    let routing = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: bookinfo}
spec:
  hosts: [echo]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: echo, subset: v2}
  - route:
    - destination: {host: echo, subset: v1}
    retries:
      attempts: 2
      retryOn: unavailable
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: bookinfo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";
    let objects = [("VirtualService", NS, "echo"), ("DestinationRule", NS, "echo")];
    let echo = Echo::start(&[("grpc-v1", "v1"), ("grpc-v2", "v2")], "grpc", routing, &objects);
    let url = echo.url("/");
    let (jason, _) = echo.load(&["--url", &url, "--protocol", "grpc", "--count", "20", "--header", "end-user: jason"]);
    assert_eq!(count(&jason, "servedBy", "grpc-v2"), 20, "{jason}");
    assert_eq!(count(&jason, "grpcStatuses", "0"), 20, "{jason}");
    // Each request's first try is UNAVAILABLE (14); the route retries it.
    let (retried, _) = echo.load(&[
        "--url",
        &url,
        "--protocol",
        "grpc",
        "--count",
        "10",
        "--header",
        "x-httpapp-fail-first: 1",
        "--header",
        "x-httpapp-key: g-{i}",
    ]);
    assert_eq!(count(&retried, "grpcStatuses", "0"), 10, "every request succeeds on its retry: {retried}");
    assert_eq!(echo.received("grpc-v1"), 20, "two tries per request reach grpc-v1");
    let records = echo.waypoint.requests(0).expect("waypoint /requests");
    assert!(records.iter().all(|r| r["protocol"] == "HTTP/2"), "gRPC is HTTP/2 end to end");
}

#[test]
fn source_labels_route_and_l7_authorization_denies_with_rbac_403() {
    let routing = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: bookinfo}
spec:
  hosts: [echo]
  http:
  - name: from-client
    match:
    - sourceLabels: {app: client}
    route:
    - destination: {host: echo, subset: v2}
  - name: default
    route:
    - destination: {host: echo, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: bookinfo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-no-admin, namespace: bookinfo}
spec:
  targetRefs:
  - {kind: Service, group: '', name: echo}
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/admin*]
";
    let objects =
        [("VirtualService", NS, "echo"), ("DestinationRule", NS, "echo"), ("AuthorizationPolicy", NS, "echo-no-admin")];
    let echo = Echo::start(&[("echo-v1", "v1"), ("echo-v2", "v2")], "http", routing, &objects);
    // sourceLabels: the labelled client goes to v2, a pod without the label to v1 (Istio's own
    // waypoint drops sourceLabels; this one resolves them to workloads and checks address and
    // identity).
    let (labelled, _) = echo.load(&["--url", &echo.url("/hello"), "--count", "20"]);
    assert_eq!(count(&labelled, "servedBy", "echo-v2"), 20, "{labelled}");
    let other =
        echo.cluster.add_pod(PodOptions::new("other", NS).node(0).service_account("other")).expect("unlabelled client");
    echo.cluster.wait_converged().expect("converged");
    let authority = echo.service.authority();
    let (unlabelled, _) = load(&other, &["--url", &echo.url("/hello"), "--authority", &authority, "--count", "20"]);
    assert_eq!(count(&unlabelled, "servedBy", "echo-v1"), 20, "{unlabelled}");
    // L7 policy attached to the service: /admin* is denied with Envoy's 403, before routing, and
    // never reaches an upstream.
    let before = echo.received("echo-v1") + echo.received("echo-v2");
    let (denied, _) = echo.load(&["--url", &echo.url("/admin/users"), "--count", "5"]);
    assert_eq!(count(&denied, "statuses", "403"), 5, "{denied}");
    assert_eq!(echo.received("echo-v1") + echo.received("echo-v2"), before, "denied requests reach no upstream");
    let records = echo.waypoint.requests(0).expect("waypoint /requests");
    let last = records.last().expect("records");
    assert_eq!(last["responseCode"], 403, "{last}");
    assert!(last["detail"].as_str().unwrap_or_default().contains("echo-no-admin"), "names the policy: {last}");
}

/// An L7 policy attached to the waypoint itself (`targetRefs` to its Gateway): applies to every
/// request it serves, workload-addressed ones included.
const DENY_ADMIN: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: bookinfo
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: DENY
  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]
";

#[test]
fn a_pod_addressed_by_its_ip_goes_through_a_waypoint_for_workloads() {
    require_root();
    let cluster = Cluster::builder()
        .nodes(2)
        .control_plane(true)
        .namespace(NS, &[AMBIENT, ("istio.io/use-waypoint", "waypoint")])
        .build()
        .expect("local cluster with a control plane starts");
    let waypoint = cluster
        .add_waypoint(WaypointOptions::new(NS, "waypoint").node(0).waypoint_for("workload"))
        .expect("the waypoint starts");
    let client = cluster.add_pod(PodOptions::new("client", NS).node(0).service_account("client")).expect("client");
    let server = cluster
        .add_pod(PodOptions::new("ratings-v1", NS).node(1).service_account("ratings").labels(&[("app", "ratings")]))
        .expect("server pod");
    let _http = server
        .spawn_httpapp(&["serve", "--listen", &format!("0.0.0.0:{PORT}"), "--name", "ratings-v1"])
        .expect("HTTP server starts");
    let _tcp = server.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).expect("echo server starts");
    wait_for(Duration::from_secs(15), "the waypoint's bound workloads", || {
        let dump = waypoint.admin_get("/config_dump")?.to_string();
        Ok(dump.contains(&format!("\"workload\":\"{NS}/ratings-v1\"")).then_some(()))
    });

    let url = |path: &str| format!("http://{}:{PORT}{path}", server.ip());
    let (summary, _) = load(&client, &["--url", &url("/ratings/1"), "--count", "5", "--timeout-ms", "5000"]);
    assert_eq!(count(&summary, "statuses", "200"), 5, "{summary}");
    let destination = format!("{}:{PORT}", server.ip());
    let records = waypoint.requests(0).expect("the waypoint's requests");
    let through: Vec<_> = records.iter().filter(|r| r["destination"] == destination.as_str()).collect();
    assert_eq!(through.len(), 5, "every request went through the waypoint: {records:?}");
    assert_eq!(through[0]["routeName"], "workload", "{}", through[0]);
    assert_eq!(through[0]["cluster"], format!("workload|{}|{PORT}", server.uid()).as_str());
    assert_eq!(through[0]["upstreamHost"], destination.as_str(), "forwarded to the pod at the port the client used");
    assert_eq!(through[0]["sourceIdentity"], "spiffe://cluster.local/ns/bookinfo/sa/client");

    cluster.apply("deny-admin.yaml", DENY_ADMIN, &[("AuthorizationPolicy", NS, "deny-admin")]).expect("policy applied");
    let denied = wait_for(Duration::from_secs(15), "the waypoint to enforce deny-admin", || {
        let (summary, _) = load(&client, &["--url", &url("/admin/stats"), "--count", "1", "--timeout-ms", "5000"]);
        Ok((count(&summary, "statuses", "403") == 1).then_some(summary))
    });
    let records = waypoint.requests(0).expect("the waypoint's requests");
    let last = records.iter().rev().find(|r| r["path"] == "/admin/stats").expect("the denied request's record");
    assert_eq!(last["responseCode"], 403, "{denied}");
    assert!(last["detail"].as_str().unwrap_or_default().contains("bookinfo/deny-admin"), "{last}");
    let (summary, _) = load(&client, &["--url", &url("/ratings/2"), "--count", "3", "--timeout-ms", "5000"]);
    assert_eq!(count(&summary, "statuses", "200"), 3, "other paths pass: {summary}");

    // Not HTTP: detected as TCP and relayed to the pod's port.
    echo(&client, &format!("{}:8080", server.ip()), 1000);
}
