//! Istio's Bookinfo examples and a small two-node bookinfo cluster (in
//! `tests/fixtures/bookinfo/`) load without a single error, and the model holds what the
//! YAML says.

use std::{path::Path, time::Duration as StdDuration};

use ambit_common::config::{
    ConfigStore, Kind, ObjectRef, ParseOutcome, Snapshot,
    model::{
        AbortError, HashAlgorithm, LoadBalancer, MtlsMode, PolicyScope, RouteAction, SimpleLb, StringMatch, TlsMode,
        ValueMatch,
    },
    parse_documents,
};

fn fixtures() -> ParseOutcome {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bookinfo");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut outcome = ParseOutcome::default();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        outcome.extend(parse_documents(&text, &file.file_name().unwrap().to_string_lossy()));
    }
    outcome
}

fn snapshot() -> Snapshot {
    let outcome = fixtures();
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert!(outcome.skipped.is_empty(), "{:#?}", outcome.skipped);
    let mut store = ConfigStore::new();
    let snapshot = store.apply(outcome);
    assert!(store.rejections().is_empty(), "{:#?}", store.rejections());
    snapshot
}

fn secs(s: u64) -> StdDuration {
    StdDuration::from_secs(s)
}

#[test]
fn everything_loads_with_zero_errors() {
    let s = snapshot();
    assert_eq!(s.version(), 1);
    let count = |k: Kind| s.of_kind(k).count();
    assert_eq!(count(Kind::Namespace), 1);
    assert_eq!(count(Kind::ServiceAccount), 5, "the List expands into its items");
    assert_eq!(count(Kind::Pod), 7);
    assert_eq!(count(Kind::Service), 4);
    assert_eq!(count(Kind::EndpointSlice), 4);
    assert_eq!(count(Kind::Gateway), 1);
    assert_eq!(count(Kind::VirtualService), 4);
    assert_eq!(count(Kind::DestinationRule), 4);
    assert_eq!(count(Kind::PeerAuthentication), 1);
    assert_eq!(count(Kind::AuthorizationPolicy), 1);
    let dump = serde_json::to_value(&s).unwrap();
    assert_eq!(dump["objects"].as_array().unwrap().len(), s.len());
}

#[test]
fn reviews_sends_jason_to_v2_and_everyone_else_to_v3() {
    let s = snapshot();
    let vs = s.virtual_services().find(|v| v.meta.name == "reviews").unwrap();
    assert_eq!(vs.hosts, ["reviews"]);
    assert_eq!(vs.http.len(), 2);
    let jason = &vs.http[0];
    assert_eq!(jason.name.as_deref(), Some("jason"));
    assert_eq!(jason.matches[0].headers["end-user"], ValueMatch::Is(StringMatch::Exact("jason".into())));
    let RouteAction::Route(to) = &jason.action else { panic!("{:?}", jason.action) };
    assert_eq!((to.len(), to[0].weight, to[0].destination.subset.as_deref()), (1, 100, Some("v2")));
    let rest = &vs.http[1];
    assert!(rest.matches.is_empty());
    let RouteAction::Route(to) = &rest.action else { panic!() };
    assert_eq!(to[0].destination.subset.as_deref(), Some("v3"));
    assert_eq!(rest.mirrors.len(), 1);
    assert_eq!(rest.mirrors[0].destination.subset.as_deref(), Some("v1"));
    assert_eq!(rest.mirrors[0].percentage.value(), 100.0);
}

#[test]
fn ratings_splits_75_25_and_delays_a_tenth_of_a_percent() {
    let s = snapshot();
    let vs = s.virtual_services().find(|v| v.meta.name == "ratings").unwrap();
    let route = &vs.http[0];
    let RouteAction::Route(to) = &route.action else { panic!() };
    let split: Vec<_> = to.iter().map(|d| (d.destination.subset.as_deref().unwrap(), d.weight)).collect();
    assert_eq!(split, [("v1", 75), ("v2", 25)]);
    let delay = route.fault.as_ref().unwrap().delay.as_ref().unwrap();
    assert_eq!(delay.fixed_delay.as_std(), secs(5));
    assert_eq!(delay.percentage.value(), 0.1);
    assert!(route.fault.as_ref().unwrap().abort.is_none());
}

#[test]
fn details_has_a_10s_timeout_and_3_retries_of_2s() {
    let s = snapshot();
    let vs = s.virtual_services().find(|v| v.meta.name == "details").unwrap();
    let route = &vs.http[0];
    assert_eq!(route.timeout.unwrap().as_std(), secs(10));
    let retries = route.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 3);
    assert_eq!(retries.per_try_timeout.unwrap().as_std(), secs(2));
    assert!(retries.retry_on.is_empty());
}

#[test]
fn bookinfo_com_routes_by_prefix_and_aborts_half_of_ratings() {
    let s = snapshot();
    let vs = s.virtual_services().find(|v| v.meta.name == "bookinfo").unwrap();
    assert_eq!(vs.hosts, ["bookinfo.com"]);
    let prefixes: Vec<_> = vs.http.iter().map(|r| r.matches[0].uri.clone().unwrap()).collect();
    assert_eq!(prefixes, [StringMatch::Prefix("/reviews".into()), StringMatch::Prefix("/ratings".into())]);
    let hosts: Vec<_> = vs
        .http
        .iter()
        .map(|r| match &r.action {
            RouteAction::Route(to) => to[0].destination.host.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(hosts, ["reviews", "ratings"]);
    let abort = vs.http[1].fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!(abort.error, AbortError::HttpStatus(400));
    assert_eq!(abort.percentage.value(), 50.0);
}

#[test]
fn destination_rules_carry_load_balancers_and_subsets() {
    let s = snapshot();
    let reviews = s.destination_rules().find(|d| d.meta.name == "reviews").unwrap();
    let lb = |p: &Option<ambit_common::config::model::TrafficPolicy>| {
        p.as_ref().unwrap().load_balancer.as_ref().unwrap().algorithm.clone().unwrap()
    };
    assert_eq!(lb(&reviews.traffic_policy), LoadBalancer::Simple(SimpleLb::Random));
    let names: Vec<_> = reviews.subsets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["v1", "v2", "v3"]);
    assert_eq!(reviews.subset("v3").unwrap().labels["version"], "v3");
    assert_eq!(lb(&reviews.subset("v2").unwrap().traffic_policy), LoadBalancer::Simple(SimpleLb::RoundRobin));
    assert!(reviews.subset("v1").unwrap().traffic_policy.is_none());

    let ratings = s.destination_rules().find(|d| d.meta.name == "ratings").unwrap();
    let policy = ratings.traffic_policy.as_ref().unwrap();
    assert_eq!(lb(&ratings.traffic_policy), LoadBalancer::Simple(SimpleLb::RoundRobin));
    let tcp = policy.connection_pool.as_ref().unwrap().tcp.as_ref().unwrap();
    assert_eq!((tcp.max_connections, tcp.connect_timeout.unwrap().as_std()), (Some(100), StdDuration::from_millis(30)));
    let outlier = policy.outlier_detection.as_ref().unwrap();
    assert_eq!(outlier.consecutive_5xx_errors, Some(7));
    assert_eq!(outlier.base_ejection_time.unwrap().as_std(), secs(900));

    let productpage = s.destination_rules().find(|d| d.meta.name == "productpage").unwrap();
    assert_eq!(productpage.traffic_policy.as_ref().unwrap().tls.as_ref().unwrap().mode, TlsMode::IstioMutual);
    let _ = HashAlgorithm::RingHash { minimum_ring_size: None };
}

#[test]
fn cluster_objects_say_where_workloads_run() {
    let s = snapshot();
    let ns = s.namespaces().next().unwrap();
    assert_eq!(ns.meta.labels["istio.io/dataplane-mode"], "ambient");
    assert_eq!(ns.meta.namespace, "");
    let on = |node: &str| s.pods().filter(|p| p.node_name.as_deref() == Some(node)).count();
    assert_eq!((on("node-1"), on("node-2")), (4, 3));
    let r3 = s.pods().find(|p| p.meta.labels.get("version").map(String::as_str) == Some("v3")).unwrap();
    assert_eq!(r3.ip, Some("10.244.2.12".parse().unwrap()));
    assert_eq!(r3.service_account, "bookinfo-reviews");
    assert!(r3.uid.is_some());
    let reviews = s.get(&ObjectRef::new(Kind::Service, "bookinfo", "reviews")).unwrap();
    let ambit_common::config::Object::Service(reviews) = reviews else { panic!() };
    assert_eq!(reviews.cluster_ips, ["10.96.10.13".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(reviews.waypoint.as_deref(), Some("waypoint"));
    assert_eq!(reviews.ports[0].port, 9080);
    let slice = s.endpoint_slices().find(|e| e.service_name.as_deref() == Some("reviews")).unwrap();
    assert_eq!(slice.endpoints.len(), 3);
    assert!(slice.endpoints.iter().all(|e| e.ready && e.serving && !e.terminating));
    assert!(s.gateways().next().unwrap().is_waypoint());
}

#[test]
fn security_policies() {
    let s = snapshot();
    let pa = s.peer_authentications().next().unwrap();
    assert_eq!((pa.mtls, pa.selector.is_none()), (Some(MtlsMode::Strict), true));
    let ap = s.authorization_policies().next().unwrap();
    let PolicyScope::TargetRefs(refs) = &ap.scope else { panic!("{:?}", ap.scope) };
    assert_eq!((refs[0].kind.as_str(), refs[0].name.as_str()), ("Service", "reviews"));
    assert_eq!(ap.rules[0].from[0].principals, ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]);
    assert_eq!(ap.rules[0].to[0].ports, [9080]);
}
