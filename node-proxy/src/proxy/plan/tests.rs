use std::net::SocketAddr;

use ambit_common::api::v1::Endpoint;

use super::*;
use crate::mesh::testing::{Res, endpoint, ip, mesh, service, waypoint, workload};

/// A source pod that is nobody in particular.
const CLIENT: &str = "client";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `in` (captured) and `out` (not), services to them, an empty one and one with an address-only
/// endpoint.
fn base() -> Vec<Res> {
    let address_only =
        Endpoint { address: ip("192.0.2.9"), ports: [(80, 443)].into(), ready: true, ..Default::default() };
    vec![
        Res::Workload(workload("in", "10.1.0.2", true)),
        Res::Workload(workload("out", "10.1.0.3", false)),
        Res::Service(service("web", "10.96.0.1", vec![endpoint("in", 9090)])),
        Res::Service(service("legacy", "10.96.0.2", vec![endpoint("out", 8080)])),
        Res::Service(service("empty", "10.96.0.3", vec![])),
        Res::Service(service("ext", "10.96.0.4", vec![address_only])),
    ]
}

#[test]
fn captured_workloads_get_hbone_others_pass_through() {
    let mesh = mesh(base());
    assert!(
        matches!(plan(&mesh, CLIENT, addr("10.1.0.2:8080"), |_| 0), Plan::Hbone { target, .. } if target == addr("10.1.0.2:8080"))
    );
    assert!(
        matches!(plan(&mesh, CLIENT, addr("[::ffff:10.1.0.2]:8080"), |_| 0), Plan::Hbone { target, .. } if target == addr("10.1.0.2:8080")),
        "IPv4-mapped destinations are the IPv4 workload"
    );
    assert!(matches!(
        plan(&mesh, CLIENT, addr("10.1.0.3:8080"), |_| 0),
        Plan::Passthrough { reason: PassthroughReason::NotEnrolled, .. }
    ));
    assert!(matches!(
        plan(&mesh, CLIENT, addr("8.8.8.8:53"), |_| 0),
        Plan::Passthrough { reason: PassthroughReason::OutsideMesh, .. }
    ));
}

#[test]
fn service_vips_resolve_to_an_endpoint_and_its_target_port() {
    let mesh = mesh(base());
    match plan(&mesh, CLIENT, addr("10.96.0.1:80"), |_| 0) {
        Plan::Hbone { target, workload } => {
            assert_eq!(target, addr("10.1.0.2:9090"), "the endpoint's port mapping wins");
            assert_eq!(workload.uid, "in");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan(&mesh, CLIENT, addr("10.96.0.2:80"), |_| 0),
        Plan::Passthrough { reason: PassthroughReason::NotEnrolled, .. }
    ));
    assert!(
        matches!(plan(&mesh, CLIENT, addr("10.96.0.3:80"), |_| 0), Plan::NoEndpoints { ref service } if service == "ns/empty")
    );
    assert!(matches!(
        plan(&mesh, CLIENT, addr("10.96.0.4:80"), |_| 0),
        Plan::Passthrough { target, reason: PassthroughReason::AddressEndpoint } if target == addr("192.0.2.9:443")
    ));
    assert!(matches!(plan(&mesh, CLIENT, addr("10.96.0.1:81"), |_| 0), Plan::Passthrough { .. }), "undeclared port");
}

/// `base()` plus waypoint `ns/wp` with instances `wp-1`, `wp-2` (not captured, as the control
/// plane describes waypoint pods), the service `reviews` bound to it, the workload `bound`
/// bound to it, and waypoint `ns/idle` without instances.
fn with_waypoints() -> Vec<Res> {
    let mut resources = base();
    let mut bound = workload("bound", "10.1.0.5", true);
    bound.waypoint = "ns/wp".into();
    let mut reviews = service("reviews", "10.96.0.10", vec![endpoint("in", 9080)]);
    reviews.waypoint = "ns/wp".into();
    resources.extend([
        Res::Workload(workload("wp-1", "10.2.0.2", false)),
        Res::Workload(workload("wp-2", "10.2.0.3", false)),
        Res::Workload(bound),
        Res::Service(reviews),
        Res::Waypoint(waypoint("wp", &["wp-1", "wp-2"])),
        Res::Waypoint(waypoint("idle", &[])),
    ]);
    resources
}

/// The waypoint plan's parts: (waypoint, instance uid, target, authority).
fn via(plan: Plan) -> (String, String, SocketAddr, SocketAddr) {
    match plan {
        Plan::Waypoint { waypoint, instance, target, authority } => (waypoint, instance.uid.clone(), target, authority),
        other => panic!("not through a waypoint: {other:?}"),
    }
}

#[test]
fn a_service_bound_to_a_waypoint_goes_to_one_of_its_instances() {
    let mesh = mesh(with_waypoints());
    let (waypoint, instance, target, authority) = via(plan(&mesh, CLIENT, addr("10.96.0.10:80"), |_| 1));
    assert_eq!(waypoint, "ns/wp");
    assert_eq!((instance.as_str(), target), ("wp-2", addr("10.2.0.3:15008")), "pick chooses the instance");
    assert_eq!(authority, addr("10.96.0.10:80"), "the waypoint is asked for the VIP and service port");
    let (_, instance, target, _) = via(plan(&mesh, CLIENT, addr("10.96.0.10:80"), |_| 0));
    assert_eq!((instance.as_str(), target), ("wp-1", addr("10.2.0.2:15008")));
    let (_, _, _, authority) = via(plan(&mesh, CLIENT, addr("[::ffff:10.96.0.10]:80"), |_| 0));
    assert_eq!(authority, addr("10.96.0.10:80"), "an IPv4-mapped VIP is named as the IPv4 VIP");
}

#[test]
fn a_workload_bound_to_a_waypoint_is_reached_through_it() {
    let mesh = mesh(with_waypoints());
    let (waypoint, _, target, authority) = via(plan(&mesh, CLIENT, addr("10.1.0.5:7000"), |_| 0));
    assert_eq!((waypoint.as_str(), target), ("ns/wp", addr("10.2.0.2:15008")));
    assert_eq!(authority, addr("10.1.0.5:7000"), "the pod's own address and port");
}

#[test]
fn an_endpoint_bound_to_a_waypoint_is_reached_through_it() {
    let mut resources = with_waypoints();
    resources.push(Res::Service(service("front", "10.96.0.11", vec![endpoint("bound", 9000)])));
    let mesh = mesh(resources);
    let (waypoint, _, _, authority) = via(plan(&mesh, CLIENT, addr("10.96.0.11:80"), |_| 0));
    assert_eq!(waypoint, "ns/wp", "the service has no waypoint, its endpoint has");
    assert_eq!(authority, addr("10.1.0.5:9000"), "the endpoint's address and target port");
}

#[test]
fn a_waypoint_that_cannot_be_reached_refuses_the_connection() {
    let mut resources = with_waypoints();
    let mut idle = service("ratings", "10.96.0.12", vec![endpoint("in", 9080)]);
    idle.waypoint = "ns/idle".into();
    let mut gone = service("details", "10.96.0.13", vec![endpoint("in", 9080)]);
    gone.waypoint = "ns/gone".into();
    let mut orphan = workload("orphan", "10.1.0.6", true);
    orphan.waypoint = "ns/idle".into();
    resources.extend([Res::Service(idle), Res::Service(gone), Res::Workload(orphan)]);
    let mesh = mesh(resources);
    let refusal = |destination: &str| match plan(&mesh, CLIENT, addr(destination), |_| 0) {
        Plan::NoWaypoint(e) => e,
        other => panic!("{destination}: {other:?}"),
    };
    assert_eq!(
        refusal("10.96.0.12:80").to_string(),
        "service ns/ratings is bound to waypoint ns/idle, which has no ready instance \
         (no running pod in namespace ns labelled gateway.networking.k8s.io/gateway-name=idle)"
    );
    assert!(matches!(refusal("10.96.0.13:80"), NoWaypoint::Unknown { ref waypoint, .. } if waypoint == "ns/gone"));
    assert_eq!(
        refusal("10.1.0.6:80"),
        NoWaypoint::NoInstance { bound: BoundTo::Workload("ns/orphan".into()), waypoint: "ns/idle".into() },
        "never around the waypoint, even when the endpoints are ready"
    );
}

#[test]
fn a_waypoints_own_traffic_is_not_sent_back_to_it() {
    let mesh = mesh(with_waypoints());
    assert!(
        matches!(plan(&mesh, "wp-1", addr("10.96.0.10:80"), |_| 0), Plan::Hbone { target, .. } if target == addr("10.1.0.2:9080")),
        "from an instance of the service's waypoint: straight to an endpoint"
    );
    assert!(
        matches!(plan(&mesh, "wp-2", addr("10.1.0.5:7000"), |_| 0), Plan::Hbone { target, .. } if target == addr("10.1.0.5:7000")),
        "from an instance of the workload's waypoint: straight to the workload"
    );
}
