//! Route selection against the behaviour Istio documents for VirtualService `http` and `tcp`
//! routes (<https://istio.io/latest/docs/reference/config/networking/virtual-service/>), on
//! route tables shaped as the control plane compiles them.

use std::net::{IpAddr, Ipv4Addr};

use ambit_common::{
    api::v1::{
        HeaderMatch, HttpMatch, HttpRoute, IpNet, PortRoutes, SourceWorkload, SourceWorkloads, StringMatcher, TcpMatch,
        TcpRoute, WeightedCluster, string_matcher::Kind,
    },
    identity::SpiffeId,
};

use super::*;

fn exact(v: &str) -> Option<StringMatcher> {
    Some(StringMatcher { kind: Some(Kind::Exact(v.into())) })
}
fn prefix(v: &str) -> Option<StringMatcher> {
    Some(StringMatcher { kind: Some(Kind::Prefix(v.into())) })
}
fn regex(v: &str) -> Option<StringMatcher> {
    Some(StringMatcher { kind: Some(Kind::Regex(v.into())) })
}
fn header(name: &str, value: Option<StringMatcher>) -> HeaderMatch {
    HeaderMatch { name: name.into(), value }
}

fn route(name: &str, m: Option<HttpMatch>) -> HttpRoute {
    HttpRoute { name: name.into(), r#match: m, ..Default::default() }
}

fn router(routes: Vec<HttpRoute>) -> PortRouter {
    PortRouter::new(
        "reviews.bookinfo.svc.cluster.local",
        &PortRoutes { port: 9080, http: routes, ..Default::default() },
    )
    .expect("the table compiles")
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", ns, sa).unwrap()
}

fn mesh_source(ip: [u8; 4], ns: &str, sa: &str) -> Source {
    Source { address: IpAddr::from(ip), identity: Some(id(ns, sa)) }
}

fn any_source() -> Source {
    mesh_source([10, 1, 0, 2], "bookinfo", "productpage")
}

/// The name of the route `request` (built by `build`) takes from `source`, if any.
fn selected(
    router: &PortRouter,
    source: &Source,
    build: impl FnOnce(http::request::Builder) -> http::request::Builder,
) -> Option<String> {
    let (parts, ()) = build(http::Request::builder()).body(()).unwrap().into_parts();
    router.select_http(&RequestView::new(&parts, source)).map(|(_, r)| r.name.clone())
}

fn get(uri: &str) -> impl FnOnce(http::request::Builder) -> http::request::Builder {
    let uri = uri.to_owned();
    move |b| b.uri(uri)
}

#[test]
fn the_first_route_whose_match_holds_wins_and_none_means_no_route() {
    let bookinfo = router(vec![
        route("jason", Some(HttpMatch { headers: vec![header("end-user", exact("jason"))], ..Default::default() })),
        route("reviews-prefix", Some(HttpMatch { uri: prefix("/reviews"), ..Default::default() })),
    ]);
    let s = any_source();
    assert_eq!(selected(&bookinfo, &s, |b| b.uri("/reviews/1").header("end-user", "jason")).as_deref(), Some("jason"));
    assert_eq!(
        selected(&bookinfo, &s, |b| b.uri("/reviews/1").header("end-user", "bob")).as_deref(),
        Some("reviews-prefix")
    );
    assert_eq!(selected(&bookinfo, &s, get("/ratings/1")), None, "nothing matches: Envoy's 404 NR");
    // A route without a match takes everything that reaches it.
    let with_default = router(vec![
        route("admin", Some(HttpMatch { uri: exact("/admin"), ..Default::default() })),
        route("default", None),
    ]);
    assert_eq!(selected(&with_default, &s, get("/anything")).as_deref(), Some("default"));
    assert_eq!(selected(&with_default, &s, get("/admin")).as_deref(), Some("admin"));
}

#[test]
fn uri_exact_prefix_and_regex_match_the_path_without_its_query() {
    let s = any_source();
    let exact_route = router(vec![route("r", Some(HttpMatch { uri: exact("/productpage"), ..Default::default() }))]);
    assert!(selected(&exact_route, &s, get("/productpage?u=normal")).is_some(), "the query is not part of the path");
    assert!(selected(&exact_route, &s, get("/productpage/")).is_none());
    assert!(selected(&exact_route, &s, get("/Productpage")).is_none(), "case matters by default");

    let prefix_route = router(vec![route("r", Some(HttpMatch { uri: prefix("/api/v1"), ..Default::default() }))]);
    assert!(selected(&prefix_route, &s, get("/api/v1")).is_some());
    assert!(
        selected(&prefix_route, &s, get("/api/v1beta/x")).is_some(),
        "a prefix is a string prefix, not a path segment"
    );
    assert!(selected(&prefix_route, &s, get("/api/v2")).is_none());

    // RE2, whole value: "/static/.*" does not hold for "/x/static/a".
    let regex_route =
        router(vec![route("r", Some(HttpMatch { uri: regex("/static/.*\\.(css|js)"), ..Default::default() }))]);
    assert!(selected(&regex_route, &s, get("/static/site.css")).is_some());
    assert!(selected(&regex_route, &s, get("/x/static/site.css")).is_none(), "anchored at the start");
    assert!(selected(&regex_route, &s, get("/static/site.css.map")).is_none(), "anchored at the end");
}

#[test]
fn ignore_uri_case_applies_to_exact_and_prefix_but_never_to_regex() {
    let s = any_source();
    let m = |uri| route("r", Some(HttpMatch { uri, ignore_uri_case: true, ..Default::default() }));
    assert!(selected(&router(vec![m(exact("/Login"))]), &s, get("/LOGIN")).is_some());
    assert!(selected(&router(vec![m(prefix("/API/"))]), &s, get("/api/users")).is_some());
    assert!(selected(&router(vec![m(prefix("/API/"))]), &s, get("/ap")).is_none(), "shorter than the prefix");
    assert!(
        selected(&router(vec![m(regex("/login"))]), &s, get("/LOGIN")).is_none(),
        "Istio: regex ignores ignoreUriCase"
    );
}

#[test]
fn method_scheme_and_authority() {
    let s = any_source();
    let post = router(vec![route("r", Some(HttpMatch { method: exact("POST"), ..Default::default() }))]);
    assert!(selected(&post, &s, |b| b.method("POST").uri("/")).is_some());
    assert!(selected(&post, &s, |b| b.method("GET").uri("/")).is_none());

    let scheme = router(vec![route("r", Some(HttpMatch { scheme: exact("https"), ..Default::default() }))]);
    assert!(selected(&scheme, &s, get("/")).is_none(), "cleartext in the tunnel is http");
    assert!(selected(&scheme, &s, get("https://reviews/")).is_some());

    let authority = router(vec![route("r", Some(HttpMatch { authority: prefix("reviews."), ..Default::default() }))]);
    assert!(
        selected(&authority, &s, |b| b.uri("/").header("host", "reviews.bookinfo:9080")).is_some(),
        "HTTP/1.1 Host"
    );
    assert!(selected(&authority, &s, get("http://reviews.bookinfo:9080/")).is_some(), "HTTP/2 :authority");
    assert!(selected(&authority, &s, |b| b.uri("/").header("host", "ratings")).is_none());
}

#[test]
fn headers_exact_prefix_regex_presence_and_repeated_values() {
    let s = any_source();
    let one = |h: HeaderMatch| router(vec![route("r", Some(HttpMatch { headers: vec![h], ..Default::default() }))]);
    let present = one(header("x-canary", None));
    assert!(selected(&present, &s, |b| b.uri("/").header("x-canary", "")).is_some(), "presence, even empty");
    assert!(selected(&present, &s, get("/")).is_none());
    let pre = one(header("user-agent", prefix("Mozilla/")));
    assert!(selected(&pre, &s, |b| b.uri("/").header("user-agent", "Mozilla/5.0")).is_some());
    assert!(selected(&pre, &s, |b| b.uri("/").header("user-agent", "curl/8")).is_none());
    let re = one(header("cookie", regex(".*user=jason.*")));
    assert!(selected(&re, &s, |b| b.uri("/").header("cookie", "a=1; user=jason; b=2")).is_some());
    // Repeated headers are matched on their values joined with ",".
    let joined = one(header("x-tag", exact("a,b")));
    assert!(selected(&joined, &s, |b| b.uri("/").header("x-tag", "a").header("x-tag", "b")).is_some());
    // Envoy's pseudo-headers are headers too.
    let pseudo = one(header(":path", exact("/p?x=1")));
    assert!(selected(&pseudo, &s, get("/p?x=1")).is_some());
    // Every condition must hold.
    let both = router(vec![route(
        "r",
        Some(HttpMatch {
            headers: vec![header("a", exact("1")), header("b", exact("2"))],
            uri: prefix("/"),
            ..Default::default()
        }),
    )]);
    assert!(selected(&both, &s, |b| b.uri("/").header("a", "1").header("b", "2")).is_some());
    assert!(selected(&both, &s, |b| b.uri("/").header("a", "1")).is_none());
}

#[test]
fn without_headers_excludes_requests_and_compares_a_missing_header_as_empty() {
    let s = any_source();
    let not_jason = router(vec![
        route(
            "not-jason",
            Some(HttpMatch { without_headers: vec![header("end-user", exact("jason"))], ..Default::default() }),
        ),
        route("jason", None),
    ]);
    assert_eq!(selected(&not_jason, &s, |b| b.uri("/").header("end-user", "bob")).as_deref(), Some("not-jason"));
    assert_eq!(
        selected(&not_jason, &s, get("/")).as_deref(),
        Some("not-jason"),
        "no header: exact jason does not hold"
    );
    assert_eq!(selected(&not_jason, &s, |b| b.uri("/").header("end-user", "jason")).as_deref(), Some("jason"));
    let no_debug = router(vec![route(
        "r",
        Some(HttpMatch { without_headers: vec![header("x-debug", None)], ..Default::default() }),
    )]);
    assert!(selected(&no_debug, &s, get("/")).is_some());
    assert!(selected(&no_debug, &s, |b| b.uri("/").header("x-debug", "0")).is_none(), "presence excludes any value");
}

#[test]
fn query_params_exact_regex_and_presence_decoded() {
    let s = any_source();
    let one =
        |q: HeaderMatch| router(vec![route("r", Some(HttpMatch { query_params: vec![q], ..Default::default() }))]);
    let version = one(header("version", exact("v2")));
    assert!(selected(&version, &s, get("/?a=1&version=v2")).is_some());
    assert!(selected(&version, &s, get("/?version=v3")).is_none());
    assert!(selected(&version, &s, get("/")).is_none());
    assert!(selected(&version, &s, get("/?version=v2&version=v3")).is_some(), "the first value counts");
    assert!(selected(&version, &s, get("/?versio%6E=v%32")).is_some(), "names and values are percent-decoded");
    let any_id = one(header("id", regex("[0-9]+")));
    assert!(selected(&any_id, &s, get("/?id=42")).is_some());
    assert!(selected(&any_id, &s, get("/?id=42x")).is_none());
    let flag = one(header("debug", None));
    assert!(selected(&flag, &s, get("/?debug")).is_some(), "a parameter without a value is present");
    assert!(selected(&flag, &s, get("/?debugging=1")).is_none());
}

#[test]
fn source_labels_need_both_the_address_and_the_identity_of_a_selected_workload() {
    let v2 = SourceWorkload {
        uid: "reviews-v2-abc".into(),
        addresses: vec![vec![10, 1, 0, 7]],
        identity: id("bookinfo", "reviews").to_string(),
    };
    let from_v2 = router(vec![
        route(
            "from-v2",
            Some(HttpMatch { source_workloads: Some(SourceWorkloads { workloads: vec![v2] }), ..Default::default() }),
        ),
        route("others", None),
    ]);
    let pick = |source: Source| selected(&from_v2, &source, get("/")).unwrap();
    assert_eq!(pick(mesh_source([10, 1, 0, 7], "bookinfo", "reviews")), "from-v2");
    assert_eq!(pick(mesh_source([10, 1, 0, 8], "bookinfo", "reviews")), "others", "same service account, other pod");
    assert_eq!(pick(mesh_source([10, 1, 0, 7], "bookinfo", "ratings")), "others", "right address, wrong identity");
    assert_eq!(pick(Source { address: Ipv4Addr::new(10, 1, 0, 7).into(), identity: None }), "others", "plaintext");
    // sourceLabels that select no pod match no source.
    let nobody = router(vec![route(
        "nobody",
        Some(HttpMatch { source_workloads: Some(SourceWorkloads::default()), ..Default::default() }),
    )]);
    assert!(selected(&nobody, &any_source(), get("/")).is_none());
}

#[test]
fn source_namespace_comes_from_the_verified_identity() {
    let from_test = router(vec![route("r", Some(HttpMatch { source_namespace: "test".into(), ..Default::default() }))]);
    assert!(selected(&from_test, &mesh_source([10, 1, 0, 2], "test", "client"), get("/")).is_some());
    assert!(selected(&from_test, &mesh_source([10, 1, 0, 2], "prod", "client"), get("/")).is_none());
    assert!(
        selected(&from_test, &Source { address: Ipv4Addr::new(10, 1, 0, 2).into(), identity: None }, get("/"))
            .is_none()
    );
}

#[test]
fn an_invalid_table_is_refused_whole_with_the_route_and_field_named() {
    let routes = PortRoutes {
        port: 9080,
        http: vec![
            route("fine", None),
            route(
                "broken",
                Some(HttpMatch { headers: vec![header("end-user", regex("(unclosed"))], ..Default::default() }),
            ),
        ],
        ..Default::default()
    };
    let error = PortRouter::new("reviews.bookinfo.svc.cluster.local", &routes).err().expect("refused");
    assert_eq!((error.route.as_str(), error.field.as_str()), ("broken", "match.headers[end-user]"));
    let text = error.to_string();
    assert!(text.contains("reviews.bookinfo.svc.cluster.local port 9080") && text.contains("RE2"), "{text}");
    let empty = PortRoutes {
        port: 9080,
        http: vec![route("", Some(HttpMatch { uri: Some(StringMatcher { kind: None }), ..Default::default() }))],
        ..Default::default()
    };
    let error = PortRouter::new("h", &empty).err().expect("refused");
    assert_eq!((error.route.as_str(), error.field.as_str()), ("#0", "match.uri"));
}

fn cluster(name: &str, weight: u32) -> WeightedCluster {
    WeightedCluster { cluster: name.into(), weight, ..Default::default() }
}

#[test]
fn weights_split_exactly_over_every_draw() {
    // The 75/25 split of Istio's traffic-shifting task, over every possible draw.
    let clusters = [cluster("reviews|9080|v1", 75), cluster("reviews|9080|v3", 25)];
    let mut counts = std::collections::BTreeMap::new();
    for point in 0..100 {
        let chosen = pick_weighted(&clusters, |total| {
            assert_eq!(total, 100);
            point
        })
        .unwrap();
        *counts.entry(chosen.cluster.as_str()).or_insert(0) += 1;
    }
    assert_eq!(counts.get("reviews|9080|v1"), Some(&75));
    assert_eq!(counts.get("reviews|9080|v3"), Some(&25));
    // Weight 0 is never chosen; nothing with weight: no cluster.
    let zero = [cluster("a", 0), cluster("b", 1)];
    assert!((0..1).all(|p| pick_weighted(&zero, |_| p).unwrap().cluster == "b"));
    assert!(pick_weighted(&[cluster("a", 0)], |_| 0).is_none());
    assert!(pick_weighted(&[], |_| 0).is_none());
    // A draw out of range is clamped rather than panicking.
    assert_eq!(pick_weighted(&clusters, |_| 1_000).unwrap().cluster, "reviews|9080|v3");
}

#[test]
fn tcp_routes_match_on_destination_subnets_and_source() {
    let net = |a: [u8; 4], len| IpNet { address: a.to_vec(), prefix_len: len };
    let routes = PortRoutes {
        port: 27017,
        tcp: vec![
            TcpRoute {
                matches: vec![TcpMatch { destination_subnets: vec![net([10, 96, 0, 0], 16)], ..Default::default() }],
                clusters: vec![cluster("mongo|27017|internal", 100)],
            },
            TcpRoute {
                matches: vec![TcpMatch { source_namespace: "batch".into(), ..Default::default() }],
                clusters: vec![cluster("mongo|27017|batch", 100)],
            },
            TcpRoute { matches: vec![], clusters: vec![cluster("mongo|27017|", 100)] },
        ],
        ..Default::default()
    };
    let router = PortRouter::new("mongo.db.svc.cluster.local", &routes).unwrap();
    let pick = |source: &Source, to: [u8; 4]| {
        router.select_tcp(source, IpAddr::from(to)).unwrap().1.clusters[0].cluster.clone()
    };
    let web = mesh_source([10, 1, 0, 2], "web", "app");
    assert_eq!(pick(&web, [10, 96, 3, 4]), "mongo|27017|internal");
    assert_eq!(pick(&web, [10, 97, 0, 1]), "mongo|27017|", "outside the /16");
    assert_eq!(pick(&mesh_source([10, 1, 0, 3], "batch", "job"), [10, 97, 0, 1]), "mongo|27017|batch");
    let bad = PortRoutes {
        port: 1,
        tcp: vec![TcpRoute {
            matches: vec![TcpMatch { destination_subnets: vec![net([10, 0, 0, 0], 33)], ..Default::default() }],
            clusters: vec![],
        }],
        ..Default::default()
    };
    let error = PortRouter::new("h", &bad).err().expect("refused");
    assert_eq!(error.field, "matches[0].destinationSubnets[0]");
    assert!(error.reason.contains("longer than 32"), "{error}");
}

#[test]
fn subnets_of_every_length() {
    let subnet = |a: [u8; 4], len| Subnet::compile(&IpNet { address: a.to_vec(), prefix_len: len }).unwrap();
    let ip = |a: [u8; 4]| IpAddr::from(a);
    assert!(subnet([0, 0, 0, 0], 0).contains(ip([192, 168, 1, 1])));
    assert!(subnet([10, 1, 2, 3], 32).contains(ip([10, 1, 2, 3])));
    assert!(!subnet([10, 1, 2, 3], 32).contains(ip([10, 1, 2, 4])));
    assert!(subnet([10, 1, 2, 0], 23).contains(ip([10, 1, 3, 255])));
    assert!(!subnet([10, 1, 2, 0], 23).contains(ip([10, 1, 4, 0])));
    assert!(!subnet([10, 0, 0, 0], 8).contains("::ffff:10.0.0.1".parse().unwrap()), "families never mix");
    let v6 = Subnet::compile(&IpNet {
        address: "fd00::".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec(),
        prefix_len: 8,
    })
    .unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
}
