//! Compiling configurations: the (vip, port) index, refusals that name the resource, and cluster
//! state kept across updates.

use ambit_common::api::v1::{
    AppProtocol, Cluster, EndpointTransport, Forward, HttpRoute, LbEndpoint, OutlierDetection, PortRoutes, Resource,
    RouteTable, Update, WeightedCluster, http_route, resource::Kind,
};

use super::*;
use crate::outlier::Outcome;

const HOST: &str = "reviews.bookinfo.svc.cluster.local";

fn endpoint(last: u8) -> LbEndpoint {
    LbEndpoint {
        address: vec![10, 1, 0, last],
        port: 9080,
        transport: EndpointTransport::Plaintext as i32,
        ..Default::default()
    }
}

fn cluster(endpoints: Vec<LbEndpoint>) -> Resource {
    let cluster = Cluster {
        hostname: HOST.into(),
        port: 9080,
        endpoints,
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx_errors: 1,
            interval_ms: 10_000,
            base_ejection_time_ms: 30_000,
            max_ejection_percent: 100,
            ..Default::default()
        }),
        ..Default::default()
    };
    Resource { name: format!("{HOST}|9080|"), kind: Some(Kind::Cluster(cluster)) }
}

fn table(hostname: &str, vip: [u8; 4], cluster: &str) -> Resource {
    let route = HttpRoute {
        name: "default".into(),
        action: Some(http_route::Action::Forward(Forward {
            clusters: vec![WeightedCluster { cluster: cluster.into(), weight: 100, ..Default::default() }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let port = PortRoutes { port: 9080, protocol: AppProtocol::Http as i32, http: vec![route], ..Default::default() };
    let table =
        RouteTable { hostname: hostname.into(), ports: vec![port], vips: vec![vip.to_vec()], ..Default::default() };
    Resource { name: hostname.into(), kind: Some(Kind::RouteTable(table)) }
}

fn set(version: u64, resources: Vec<Resource>) -> ResourceSet {
    ResourceSet::default().apply(Update { version, full: true, upserts: resources, ..Default::default() }).unwrap()
}

fn default_cluster() -> String {
    format!("{HOST}|9080|")
}

#[test]
fn service_ports_are_indexed_by_vip_and_port() {
    let snapshot = Snapshot::compile(
        &set(1, vec![table(HOST, [10, 96, 0, 1], &default_cluster()), cluster(vec![endpoint(1)])]),
        None,
    )
    .unwrap();
    let service = snapshot.service("10.96.0.1:9080".parse().unwrap()).expect("indexed");
    assert_eq!((service.hostname.as_str(), service.port, service.routes.len()), (HOST, 9080, 1));
    assert!(snapshot.service("10.96.0.1:80".parse().unwrap()).is_none());
    assert!(snapshot.service("10.96.0.2:9080".parse().unwrap()).is_none());
    assert_eq!(snapshot.dump()["routeTables"][HOST]["ports"][0]["httpRoutes"][0], "default");
}

#[test]
fn refusals_name_the_resource_and_field() {
    let missing = Snapshot::compile(&set(1, vec![table(HOST, [10, 96, 0, 1], "nope|1|")]), None).err().unwrap();
    let text = missing.to_string();
    assert!(text.contains(HOST) && text.contains("\"default\"") && text.contains("nope|1|"), "{text}");
    let conflict = Snapshot::compile(
        &set(
            1,
            vec![
                table(HOST, [10, 96, 0, 1], &default_cluster()),
                table("other.ns", [10, 96, 0, 1], &default_cluster()),
                cluster(vec![]),
            ],
        ),
        None,
    )
    .err()
    .unwrap();
    assert!(matches!(conflict, CompileError::Conflict { .. }), "{conflict}");
    let mut bad_endpoint = endpoint(1);
    bad_endpoint.transport = EndpointTransport::Hbone as i32;
    let error = Snapshot::compile(&set(1, vec![cluster(vec![bad_endpoint])]), None).err().unwrap().to_string();
    assert!(error.contains("endpoints[0].identity"), "{error}");
}

#[test]
fn an_unchanged_cluster_is_kept_and_a_changed_one_keeps_its_endpoints_state() {
    let first = Snapshot::compile(&set(1, vec![cluster(vec![endpoint(1), endpoint(2)])]), None).unwrap();
    let state = &first.clusters[&default_cluster()];
    state.record(1, Outcome::Status(503));
    assert!(state.status().endpoints[1].ejected);

    let same = Snapshot::compile(&set(2, vec![cluster(vec![endpoint(1), endpoint(2)])]), Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&same.clusters[&default_cluster()], state), "nothing changed: the same state");

    // Endpoint 1 goes, endpoint 3 comes: 2 (now at index 0) stays ejected.
    let changed = Snapshot::compile(&set(3, vec![cluster(vec![endpoint(2), endpoint(3)])]), Some(&same)).unwrap();
    let endpoints = changed.clusters[&default_cluster()].status().endpoints;
    assert_eq!((endpoints[0].address.as_str(), endpoints[0].ejected), ("10.1.0.2:9080", true));
    assert!(!endpoints[1].ejected);
    assert_eq!(changed.clusters[&default_cluster()].balancer().in_use(), [1], "the ejected endpoint is not picked");
}
