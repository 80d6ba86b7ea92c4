//! The two-node bookinfo cluster (`common/tests/fixtures/bookinfo/`) compiled for node
//! proxies: concrete workloads, services, endpoints, mTLS and policy bindings.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use ambit_common::{
    api::v1::{self as api, AuthorizationAction, MtlsMode, resource::Kind},
    config::{ConfigStore, ParseOutcome, Snapshot, parse_documents},
};
use ambit_control_plane::compile::{Compiled, MeshConfig, compile};

const PRODUCTPAGE_UID: &str = "5b1c2d3e-prod-v100-0000-000000000010";
const REVIEWS_UIDS: [&str; 3] = [
    "5b1c2d3e-revi-v100-0000-000000000012",
    "5b1c2d3e-revi-v200-0000-000000000011",
    "5b1c2d3e-revi-v300-0000-000000000012",
];

/// Node-level policies added to the fixtures: one mesh-wide, one selecting the ratings pods.
const EXTRA_POLICIES: &str = "apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-outside-pods, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {notIpBlocks: [10.244.0.0/16]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-from-reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews]}}]
    to: [{operation: {ports: ['9080']}}]
  - to: [{operation: {methods: [GET], paths: [/health]}}]
";

fn bookinfo(extra: Option<&str>) -> Snapshot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/tests/fixtures/bookinfo");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut outcome = ParseOutcome::default();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        outcome.extend(parse_documents(&text, &file.file_name().unwrap().to_string_lossy()));
    }
    if let Some(extra) = extra {
        outcome.extend(parse_documents(extra, "extra.yaml"));
    }
    assert!(outcome.errors.is_empty(), "{:#?}", outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    let mut store = ConfigStore::new();
    let snapshot = store.apply(outcome);
    assert!(store.rejections().is_empty(), "{:#?}", store.rejections());
    snapshot
}

fn compiled(extra: Option<&str>) -> Compiled {
    compile(&bookinfo(extra), &MeshConfig::default())
}

fn workloads(c: &Compiled) -> Vec<&api::Workload> {
    c.shared
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Workload(w)) => Some(w),
            _ => None,
        })
        .collect()
}

fn workload<'c>(c: &'c Compiled, name_prefix: &str) -> &'c api::Workload {
    workloads(c).into_iter().find(|w| w.name.starts_with(name_prefix)).unwrap()
}

fn service<'c>(c: &'c Compiled, name: &str) -> &'c api::Service {
    match c.shared.iter().find(|r| r.name == name).and_then(|r| r.kind.as_ref()) {
        Some(Kind::Service(s)) => s,
        other => panic!("{name}: {other:?}"),
    }
}

fn ip(text: &str) -> Vec<u8> {
    match text.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[test]
fn resources_are_complete_and_ordered() {
    let c = compiled(None);
    let names: Vec<&str> = c.shared.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 1 + 7 + 4 + 1);
    assert_eq!(names[0], "bookinfo");
    assert_eq!(&names[8..12], ["bookinfo/details", "bookinfo/productpage", "bookinfo/ratings", "bookinfo/reviews"]);
    assert_eq!(names[12], "bookinfo/waypoint", "waypoints last");
    let Some(Kind::Waypoint(waypoint)) = &c.shared[12].kind else { panic!("{:?}", c.shared[12]) };
    assert!(waypoint.workload_uids.is_empty(), "the fixtures have no waypoint pod");
    let mut uids = names[1..8].to_vec();
    uids.sort_unstable();
    assert_eq!(uids, names[1..8], "workloads sorted by uid");
    assert_eq!(compiled(None).shared, c.shared, "compilation is deterministic");
}

#[test]
fn productpage_is_a_captured_workload_on_node_1() {
    let c = compiled(None);
    let w = workload(&c, "productpage");
    assert_eq!(w.uid, PRODUCTPAGE_UID);
    assert!(w.captured, "bookinfo is labelled istio.io/dataplane-mode=ambient");
    assert_eq!(
        (w.namespace.as_str(), w.service_account.as_str(), w.node.as_str()),
        ("bookinfo", "bookinfo-productpage", "node-1")
    );
    assert_eq!(w.addresses, [ip("10.244.1.10")]);
    assert_eq!((w.canonical_name.as_str(), w.canonical_revision.as_str()), ("productpage", "v1"));
    assert_eq!(w.mtls, MtlsMode::Strict as i32, "PeerAuthentication bookinfo/default is STRICT");
    assert!(w.port_mtls.is_empty());
    assert_eq!(w.waypoint, "", "the bookinfo waypoint is for service traffic only");
    assert!(w.authorization_policies.is_empty());
    let on_node_2: Vec<&str> =
        workloads(&c).into_iter().filter(|w| w.node == "node-2").map(|w| w.canonical_name.as_str()).collect();
    assert_eq!(on_node_2.len(), 3);
    assert!(workloads(&c).iter().all(|w| w.captured && w.mtls == MtlsMode::Strict as i32));
}

#[test]
fn reviews_has_three_endpoints_and_goes_through_the_waypoint() {
    let c = compiled(None);
    let s = service(&c, "bookinfo/reviews");
    assert_eq!(s.hostname, "reviews.bookinfo.svc.cluster.local");
    assert_eq!(s.vips, [ip("10.96.10.13")]);
    let port = &s.ports[0];
    assert_eq!(
        (port.port, port.target_port, port.name.as_str(), port.app_protocol.as_str()),
        (9080, 9080, "http", "http")
    );
    assert_eq!(s.waypoint, "bookinfo/waypoint");
    let endpoints: Vec<_> = s.endpoints.iter().map(|e| (e.workload_uid.as_str(), e.address.clone())).collect();
    assert_eq!(
        endpoints,
        [
            (REVIEWS_UIDS[0], ip("10.244.1.12")),
            (REVIEWS_UIDS[1], ip("10.244.2.11")),
            (REVIEWS_UIDS[2], ip("10.244.2.12")),
        ]
    );
    assert!(s.endpoints.iter().all(|e| e.ready && e.ports == BTreeMap::from([(9080, 9080)])));
    assert_eq!(service(&c, "bookinfo/productpage").waypoint, "", "only reviews is labelled");
    assert_eq!(service(&c, "bookinfo/ratings").endpoints.len(), 2);
}

#[test]
fn the_waypoint_policy_does_not_reach_node_proxies() {
    let c = compiled(None);
    assert!(c.authorizations.is_empty(), "reviews-viewer targets the reviews Service: a waypoint policy");
}

#[test]
fn node_policies_resolve_to_their_workloads() {
    let c = compiled(Some(EXTRA_POLICIES));
    let names: Vec<&str> = c.authorizations.keys().map(String::as_str).collect();
    assert_eq!(names, ["bookinfo/ratings-from-reviews", "istio-system/deny-outside-pods"]);
    for ratings in workloads(&c).into_iter().filter(|w| w.canonical_name == "ratings") {
        assert_eq!(ratings.authorization_policies, ["bookinfo/ratings-from-reviews", "istio-system/deny-outside-pods"]);
    }
    assert_eq!(workload(&c, "productpage").authorization_policies, ["istio-system/deny-outside-pods"]);

    let Some(Kind::Authorization(ratings)) = &c.authorizations["bookinfo/ratings-from-reviews"].kind else { panic!() };
    assert_eq!(ratings.action, AuthorizationAction::Allow as i32);
    assert!(ratings.has_l7, "the /health rule is HTTP-only");
    assert_eq!(ratings.rules.len(), 1, "and so it is dropped from the ALLOW policy");
    assert_eq!(ratings.rules[0].to[0].ports, [9080]);
    let Some(Kind::Authorization(deny)) = &c.authorizations["istio-system/deny-outside-pods"].kind else { panic!() };
    assert_eq!(
        (deny.action, deny.rules[0].from[0].not_ip_blocks[0].prefix_len),
        (AuthorizationAction::Deny as i32, 16)
    );
}
