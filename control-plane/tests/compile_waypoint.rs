//! Waypoint compilation on Istio's Bookinfo examples (`common/tests/fixtures/bookinfo/`): the
//! route tables and clusters the `bookinfo/waypoint` Gateway receives.
//!
//! The fixtures bind only `reviews` to the waypoint (its `istio.io/use-waypoint` label). The other
//! scenarios label the namespace as well — what `kubectl label ns bookinfo
//! istio.io/use-waypoint=waypoint` does — and add a ServiceEntry for `bookinfo.com`, so that its
//! VirtualService has a service to route.

use std::path::Path;

use ambit_common::{
    api::v1::{
        Cluster, EndpointTransport, Forward, HttpRoute, Resource, RetryOn, RouteTable, SimpleLoadBalancer,
        fault_abort::Status, http_route::Action, load_balancer::Policy, resource::Kind, string_matcher,
    },
    config::{ConfigStore, Snapshot, parse_documents},
};
use ambit_control_plane::compile::{MeshConfig, WaypointKey, compile};

const REVIEWS: &str = "reviews.bookinfo.svc.cluster.local";
const RATINGS: &str = "ratings.bookinfo.svc.cluster.local";

const BOOKINFO_COM: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bookinfo-com, namespace: bookinfo, labels: {istio.io/use-waypoint: waypoint}}
spec:
  hosts: [bookinfo.com]
  addresses: [240.240.0.1]
  ports: [{number: 80, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
";

/// The fixtures, with the namespace labelled for the waypoint when `label_namespace`.
fn snapshot(label_namespace: bool) -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/tests/fixtures/bookinfo");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut store = ConfigStore::new();
    let mut outcome = ambit_common::config::ParseOutcome::default();
    for file in files {
        let mut text = std::fs::read_to_string(&file).unwrap();
        if label_namespace && file.ends_with("namespace.yaml") {
            let labelled = "istio.io/dataplane-mode: ambient\n    istio.io/use-waypoint: waypoint";
            text = text.replacen("istio.io/dataplane-mode: ambient", labelled, 1);
            text.push_str("---\n");
            text.push_str(BOOKINFO_COM);
        }
        outcome.extend(parse_documents(&text, &file.file_name().unwrap().to_string_lossy()));
    }
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    let snapshot = store.apply(outcome);
    assert!(store.rejections().is_empty(), "{:#?}", store.rejections());
    snapshot
}

fn waypoint(label_namespace: bool) -> Vec<Resource> {
    let mut compiled = compile(&snapshot(label_namespace), &MeshConfig::default());
    let key = WaypointKey { namespace: "bookinfo".into(), name: "waypoint".into() };
    compiled.waypoints.remove(&key).expect("the bookinfo waypoint is compiled")
}

fn table<'r>(resources: &'r [Resource], hostname: &str) -> &'r RouteTable {
    resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::RouteTable(t)) if r.name == hostname => Some(t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no route table {hostname}"))
}

fn cluster<'r>(resources: &'r [Resource], name: &str) -> &'r Cluster {
    resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Cluster(c)) if r.name == name => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The HTTP routes of the service's only port.
fn http<'r>(resources: &'r [Resource], hostname: &str) -> &'r [HttpRoute] {
    let table = table(resources, hostname);
    assert_eq!(table.ports.len(), 1, "{hostname} has one port");
    &table.ports[0].http
}

fn forward(route: &HttpRoute) -> &Forward {
    match &route.action {
        Some(Action::Forward(f)) => f,
        other => panic!("{other:?}"),
    }
}

fn targets(route: &HttpRoute) -> Vec<(&str, u32)> {
    forward(route).clusters.iter().map(|c| (c.cluster.as_str(), c.weight)).collect()
}

fn simple_lb(cluster: &Cluster) -> SimpleLoadBalancer {
    match cluster.load_balancer.as_ref().and_then(|l| l.policy.clone()) {
        Some(Policy::Simple(s)) => SimpleLoadBalancer::try_from(s).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Istio's default retry policy, as `retry.DefaultPolicy` writes it.
fn assert_istio_default_conditions(route: &HttpRoute) {
    let retry = forward(route).retry.as_ref().expect("a retry policy");
    let conditions: Vec<_> = retry.retry_on().collect();
    assert_eq!(
        conditions,
        [
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Unavailable,
            RetryOn::Cancelled,
            RetryOn::RetriableStatusCodes
        ]
    );
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn the_fixtures_bind_only_the_labelled_reviews_service() {
    let resources = waypoint(false);
    let names: Vec<_> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            REVIEWS,
            "reviews.bookinfo.svc.cluster.local|9080|v1",
            "reviews.bookinfo.svc.cluster.local|9080|v2",
            "reviews.bookinfo.svc.cluster.local|9080|v3",
            "bookinfo/reviews-viewer",
        ],
        "the route table, every cluster a route or mirror names, then the L7 policies, by name"
    );
    // security.yaml's reviews-viewer targets the reviews Service (targetRefs), which is bound to
    // this waypoint: it applies to that hostname only.
    let policy = resources
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::HttpAuthorization(p)) => Some(p),
            _ => None,
        })
        .expect("reviews-viewer reaches the waypoint");
    assert_eq!(policy.hostnames, [REVIEWS]);
    assert_eq!(table(&resources, REVIEWS).virtual_service, "bookinfo/reviews");
    assert_eq!(resources, waypoint(false), "deterministic");
}

#[test]
fn reviews_sends_jason_to_v2_and_everyone_else_to_v3_mirrored_to_v1() {
    let resources = waypoint(false);
    let routes = http(&resources, REVIEWS);
    assert_eq!(routes.len(), 2);
    let jason = &routes[0];
    assert_eq!(jason.name, "jason");
    let header = &jason.r#match.as_ref().unwrap().headers[0];
    assert_eq!(header.name, "end-user");
    assert_eq!(header.value.as_ref().unwrap().kind, Some(string_matcher::Kind::Exact("jason".into())));
    assert_eq!(targets(jason), [("reviews.bookinfo.svc.cluster.local|9080|v2", 100)]);
    assert!(forward(jason).mirrors.is_empty());
    let rest = &routes[1];
    assert_eq!((rest.name.as_str(), rest.r#match.is_none()), ("everyone-else", true));
    assert_eq!(targets(rest), [("reviews.bookinfo.svc.cluster.local|9080|v3", 100)]);
    let mirror = &forward(rest).mirrors[0];
    assert_eq!(
        (mirror.cluster.as_str(), mirror.per_million),
        ("reviews.bookinfo.svc.cluster.local|9080|v1", 1_000_000)
    );
}

#[test]
fn a_route_without_retries_gets_istios_default_policy() {
    let resources = waypoint(false);
    let jason = &http(&resources, REVIEWS)[0];
    let retry = forward(jason).retry.as_ref().unwrap();
    assert_eq!((retry.attempts, retry.per_try_timeout_ms, retry.retry_other_endpoints), (2, 0, true));
    assert_istio_default_conditions(jason);
    assert_eq!(forward(jason).timeout_ms, 0, "no timeout: Istio's default");
}

#[test]
fn each_reviews_subset_has_exactly_its_version_and_its_load_balancer() {
    let resources = waypoint(false);
    let cases = [
        ("v1", [10, 244, 1, 12], "node-1", SimpleLoadBalancer::Random),
        ("v2", [10, 244, 2, 11], "node-2", SimpleLoadBalancer::RoundRobin),
        ("v3", [10, 244, 2, 12], "node-2", SimpleLoadBalancer::Random),
    ];
    for (subset, address, node, lb) in cases {
        let c = cluster(&resources, &format!("{REVIEWS}|9080|{subset}"));
        assert_eq!((c.hostname.as_str(), c.port, c.subset.as_str()), (REVIEWS, 9080, subset));
        assert_eq!(
            (c.namespace.as_str(), c.service_name.as_str(), c.destination_rule.as_str()),
            ("bookinfo", "reviews", "bookinfo/reviews")
        );
        assert_eq!(c.endpoints.len(), 1, "{subset}: exactly the pod with version={subset}");
        let e = &c.endpoints[0];
        assert_eq!((e.address.as_slice(), e.port, e.node.as_str()), (&address[..], 9080, node), "{subset}");
        assert!(e.workload_uid.starts_with("5b1c2d3e-revi"), "{}", e.workload_uid);
        assert_eq!(e.identity, "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews");
        assert_eq!(e.transport(), EndpointTransport::Hbone, "bookinfo is an ambient namespace");
        assert_eq!(simple_lb(c), lb, "{subset}");
        assert_eq!(c.outlier_detection, None);
    }
}

#[test]
fn ratings_splits_75_25_and_delays_a_tenth_of_a_percent_by_5s() {
    let resources = waypoint(true);
    let routes = http(&resources, RATINGS);
    assert_eq!(routes.len(), 1);
    assert_eq!(
        targets(&routes[0]),
        [("ratings.bookinfo.svc.cluster.local|9080|v1", 75), ("ratings.bookinfo.svc.cluster.local|9080|v2", 25)],
        "weights as written"
    );
    let delay = routes[0].fault.as_ref().unwrap().delay.as_ref().unwrap();
    assert_eq!((delay.fixed_delay_ms, delay.per_million), (5_000, 1_000));
    assert!(routes[0].fault.as_ref().unwrap().abort.is_none());
    assert_istio_default_conditions(&routes[0]);
}

#[test]
fn ratings_clusters_carry_the_destination_rule_policy() {
    let resources = waypoint(true);
    for (subset, address) in [("v1", [10, 244, 2, 10]), ("v2", [10, 244, 1, 13])] {
        let c = cluster(&resources, &format!("{RATINGS}|9080|{subset}"));
        assert_eq!(c.endpoints.iter().map(|e| e.address.as_slice()).collect::<Vec<_>>(), [&address[..]]);
        assert_eq!(simple_lb(c), SimpleLoadBalancer::RoundRobin);
        let pool = c.connection_pool.as_ref().unwrap();
        assert_eq!((pool.max_connections, pool.connect_timeout_ms), (100, 30));
        assert_eq!((pool.http2_max_requests, pool.max_requests_per_connection), (1_000, 10));
        assert_eq!((pool.http1_max_pending_requests, pool.max_retries), (u32::MAX, u32::MAX), "Istio's defaults");
        let outlier = c.outlier_detection.as_ref().unwrap();
        assert_eq!(
            (outlier.consecutive_5xx_errors, outlier.interval_ms, outlier.base_ejection_time_ms),
            (7, 300_000, 900_000)
        );
        assert_eq!((outlier.max_ejection_percent, outlier.min_health_percent), (10, 0));
    }
}

#[test]
fn details_has_a_10s_timeout_and_3_retries_of_2s() {
    let resources = waypoint(true);
    let route = &http(&resources, "details.bookinfo.svc.cluster.local")[0];
    let f = forward(route);
    assert_eq!(f.timeout_ms, 10_000);
    let retry = f.retry.as_ref().unwrap();
    assert_eq!((retry.attempts, retry.per_try_timeout_ms), (3, 2_000));
    // Without `retryOn`, Istio keeps the default conditions (and 503).
    assert_istio_default_conditions(route);
    assert_eq!(targets(route), [("details.bookinfo.svc.cluster.local|9080|v1", 100)]);
}

#[test]
fn bookinfo_com_routes_by_prefix_and_aborts_half_of_ratings() {
    let resources = waypoint(true);
    let table = table(&resources, "bookinfo.com");
    assert_eq!((table.name.as_str(), table.virtual_service.as_str()), ("bookinfo-com", "bookinfo/bookinfo"));
    let routes = &table.ports[0].http;
    assert_eq!((table.ports[0].port, routes.len()), (80, 2), "no catch-all: other paths get 404");
    let prefix = |r: &HttpRoute| r.r#match.as_ref().unwrap().uri.as_ref().unwrap().kind.clone();
    assert_eq!(prefix(&routes[0]), Some(string_matcher::Kind::Prefix("/reviews".into())));
    assert_eq!(targets(&routes[0]), [("reviews.bookinfo.svc.cluster.local|9080|", 100)], "the service's only port");
    assert_eq!(prefix(&routes[1]), Some(string_matcher::Kind::Prefix("/ratings".into())));
    assert_eq!(targets(&routes[1]), [("ratings.bookinfo.svc.cluster.local|9080|", 100)]);
    let abort = routes[1].fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!((abort.status, abort.per_million), (Some(Status::HttpStatus(400)), 500_000));
    let whole = cluster(&resources, "ratings.bookinfo.svc.cluster.local|9080|");
    assert_eq!(whole.endpoints.len(), 2, "no subset: every ratings endpoint");
}

#[test]
fn a_service_without_a_virtual_service_gets_a_default_route() {
    let resources = waypoint(true);
    let productpage = table(&resources, "productpage.bookinfo.svc.cluster.local");
    assert_eq!(productpage.virtual_service, "");
    let port = &productpage.ports[0];
    assert_eq!(
        (port.port, port.name.as_str(), port.protocol()),
        (9080, "http", ambit_common::api::v1::AppProtocol::Http)
    );
    let route = &port.http[0];
    assert_eq!((route.name.as_str(), route.r#match.is_none(), port.http.len()), ("default", true, 1));
    assert_eq!(targets(route), [("productpage.bookinfo.svc.cluster.local|9080|", 100)]);
    assert_istio_default_conditions(route);
    assert!(port.tcp.is_empty(), "an HTTP port carries no TCP traffic");
    let c = cluster(&resources, "productpage.bookinfo.svc.cluster.local|9080|");
    assert_eq!((simple_lb(c), c.endpoints.len()), (SimpleLoadBalancer::LeastRequest, 1), "its rule sets only TLS");
    assert_eq!(c.destination_rule, "bookinfo/productpage");
}

#[test]
fn identities_use_the_mesh_trust_domain() {
    let mesh = MeshConfig { trust_domain: "example.org".into(), ..MeshConfig::default() };
    let compiled = compile(&snapshot(false), &mesh);
    let resources = compiled.waypoints.values().next().unwrap();
    let v2 = cluster(resources, "reviews.bookinfo.svc.cluster.local|9080|v2");
    assert_eq!(v2.endpoints[0].identity, "spiffe://example.org/ns/bookinfo/sa/bookinfo-reviews");
}
