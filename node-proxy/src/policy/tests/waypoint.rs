//! The waypoint-bound rule: a bound port admits only an instance of its waypoint(s).

use ambit_common::api::v1::Workload;

use super::*;
use crate::policy::{BypassedWaypoint, WaypointBindings};

const WAYPOINT: &str = "cluster.local/ns/foo/sa/waypoint";

/// `foo/reviews` (uid `r`): port 8080 serves a service bound to `foo/wp`, whose instances run as
/// `foo/waypoint`; `foo/own` (uid `o`) is bound itself to `foo/wwp` (instances `foo/wwp-sa`) and
/// also serves a service bound to `foo/wp` on 9090.
fn bindings() -> WaypointBindings {
    let mut b = WaypointBindings::default();
    b.bind_port("r", 8080, "foo/wp");
    b.bind_workload("o", "foo/wwp");
    b.bind_port("o", 9090, "foo/wp");
    b.add_instance("foo/wp", "foo", "waypoint");
    b.add_instance("foo/wp", "foo", "waypoint");
    b.add_instance("foo/wwp", "foo", "wwp-sa");
    b
}

fn workload(name: &str) -> Workload {
    Workload { namespace: NS.into(), name: name.into(), ..Workload::default() }
}

fn check(uid: &str, conn: &ConnectionAttrs) -> Result<(), BypassedWaypoint> {
    let name = if uid == "r" { "reviews" } else { "own" };
    bindings().check(uid, &workload(name), conn, "cluster.local")
}

#[test]
fn an_unbound_port_admits_anyone() {
    assert_eq!(check("r", &plain().port(9090)), Ok(()));
    assert_eq!(check("r", &mtls(SLEEP).port(9090)), Ok(()));
    assert_eq!(check("unknown", &plain()), Ok(()), "a workload bound to nothing");
}

#[test]
fn a_bound_port_admits_only_its_waypoint() {
    assert_eq!(check("r", &mtls(WAYPOINT)), Ok(()));
    assert_eq!(check("r", &mtls("spiffe://cluster.local/ns/foo/sa/waypoint")), Ok(()), "with or without spiffe://");
    let refused = check("r", &mtls(SLEEP)).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "foo/reviews port 8080 is bound to waypoint foo/wp: only traffic through it is accepted \
         (from spiffe://cluster.local/ns/foo/sa/sleep)"
    );
    assert_eq!(
        check("r", &plain()).unwrap_err().to_string(),
        "foo/reviews port 8080 is bound to waypoint foo/wp: only traffic through it is accepted \
         (from plaintext from 10.1.2.3, no identity)"
    );
    assert!(
        check("r", &mtls("evil.org/ns/foo/sa/waypoint")).is_err(),
        "the waypoint's account in another trust domain"
    );
    assert!(check("r", &mtls("cluster.local/ns/bar/sa/waypoint")).is_err(), "another namespace's account");
    assert!(check("r", &mtls("cluster.local/ns/foo/sa/waypoint/x")).is_err(), "not an identity");
}

#[test]
fn the_workloads_own_waypoint_binds_every_port() {
    let own = mtls("cluster.local/ns/foo/sa/wwp-sa");
    assert_eq!(check("o", &own.clone().port(1)), Ok(()));
    assert!(check("o", &mtls(WAYPOINT).port(1)).is_err(), "the service's waypoint is not bound to port 1");
    assert_eq!(check("o", &mtls(WAYPOINT).port(9090)), Ok(()), "port 9090 is bound to both waypoints");
    assert_eq!(check("o", &own.port(9090)), Ok(()));
    let refused = check("o", &plain().port(9090)).unwrap_err();
    assert_eq!(refused.waypoints, ["foo/wp", "foo/wwp"]);
    assert!(
        refused.to_string().starts_with(
            "foo/own port 9090 is bound to waypoints foo/wp, foo/wwp: only traffic through them is accepted"
        ),
        "{refused}"
    );
}

#[test]
fn a_waypoint_without_instances_admits_nobody() {
    let mut b = WaypointBindings::default();
    b.bind_workload("x", "foo/idle");
    assert!(b.check("x", &workload("x"), &mtls(WAYPOINT), "cluster.local").is_err());
}
