//! The index: waypoints resolved to their instances, and which workload ports are bound to
//! which waypoints.

use ambit_common::api::v1::ServicePort;

use super::testing::{Res, endpoint, mesh, service, waypoint, workload};

#[test]
fn waypoints_resolve_to_their_reachable_instances() {
    let mut no_address = workload("wp-2", "10.2.0.3", false);
    no_address.addresses.clear();
    let m = mesh(vec![
        Res::Workload(workload("wp-1", "10.2.0.2", false)),
        Res::Workload(no_address),
        Res::Waypoint(waypoint("wp", &["wp-1", "wp-2", "gone"])),
    ]);
    let wp = m.waypoint("ns/wp").expect("indexed by <namespace>/<name>");
    assert_eq!(wp.name, "ns/wp");
    let uids: Vec<&str> = wp.instances.iter().map(|i| i.workload.uid.as_str()).collect();
    assert_eq!(uids, ["wp-1"], "unknown workloads and workloads without an address are left out");
    assert!(m.waypoint("ns/other").is_none());
}

#[test]
fn bound_ports_follow_the_workload_and_the_services_it_serves() {
    let mut own = workload("own", "10.1.0.4", true);
    own.waypoint = "ns/wwp".into();
    let mut reviews = service("reviews", "10.96.0.1", vec![endpoint("r1", 9080)]);
    reviews.waypoint = "ns/wp".into();
    reviews.ports.push(ServicePort { port: 81, target_port: 0, ..Default::default() });
    let mut not_ready = endpoint("r2", 9080);
    not_ready.ready = false;
    reviews.endpoints.push(not_ready);
    let mut admin = service("admin", "10.96.0.2", vec![endpoint("r1", 9090)]);
    admin.waypoint = "ns/other".into();
    let m = mesh(vec![
        Res::Workload(workload("r1", "10.1.0.2", true)),
        Res::Workload(workload("r2", "10.1.0.3", true)),
        Res::Workload(own),
        Res::Service(reviews),
        Res::Service(admin),
        Res::Service(service("plain", "10.96.0.3", vec![endpoint("r1", 7070)])),
    ]);
    assert_eq!(m.bound_waypoints("r1", 9080), ["ns/wp"], "the endpoint's own port mapping");
    assert_eq!(m.bound_waypoints("r1", 81), ["ns/wp"], "a port without mapping or target is the port itself");
    assert_eq!(m.bound_waypoints("r1", 9090), ["ns/other"]);
    assert!(m.bound_waypoints("r1", 7070).is_empty(), "a service without a waypoint binds nothing");
    assert!(m.bound_waypoints("r1", 8080).is_empty(), "no service maps to that port");
    assert_eq!(m.bound_waypoints("r2", 9080), ["ns/wp"], "an endpoint that is not ready is still bound");
    assert_eq!(m.bound_waypoints("own", 1), ["ns/wwp"], "its own waypoint: every port");
    assert_eq!(m.bound_waypoints("own", 65535), ["ns/wwp"]);
}

#[test]
fn a_workload_bound_twice_accepts_either_waypoint() {
    let mut both = workload("both", "10.1.0.2", true);
    both.waypoint = "ns/wwp".into();
    let mut svc = service("svc", "10.96.0.1", vec![endpoint("both", 8080)]);
    svc.waypoint = "ns/wp".into();
    let m = mesh(vec![Res::Workload(both), Res::Service(svc)]);
    assert_eq!(m.bound_waypoints("both", 8080), ["ns/wp", "ns/wwp"]);
    assert_eq!(m.bound_waypoints("both", 22), ["ns/wwp"]);
}

mod authorize {
    use std::net::SocketAddr;

    use ambit_common::api::v1::{
        Authorization, AuthorizationAction, AuthorizationRule, Source, StringMatch, string_match::Kind,
    };

    use super::*;
    use crate::{
        mesh::Mesh,
        policy::{ConnectionAttrs, Decision, DenyReason},
    };

    fn principals(action: AuthorizationAction, name: &str, principals: &[&str]) -> Res {
        let principals = principals.iter().map(|p| StringMatch { kind: Some(Kind::Exact((*p).into())) }).collect();
        Res::Authorization(Authorization {
            name: name.into(),
            namespace: "ns".into(),
            action: action.into(),
            rules: vec![AuthorizationRule {
                from: vec![Source { principals, ..Default::default() }],
                ..Default::default()
            }],
            has_l7: false,
        })
    }

    const SLEEP: &str = "cluster.local/ns/ns/sa/sa-sleep";
    const WAYPOINT: &str = "cluster.local/ns/ns/sa/sa-wp-1";

    /// `reviews` serves port 9080 for a service bound to `ns/wp` and port 7070 for a plain one;
    /// an ALLOW policy names `sleep`, the implicit policy names the waypoint, as the control
    /// plane compiles them; `extra` policies are appended to its list.
    fn cluster(extra: Vec<Res>) -> Mesh {
        let mut reviews = workload("reviews", "10.1.0.2", true);
        reviews.authorization_policies = vec!["ns/istio_allow_waypoint_ns_wp".into(), "ns/only-sleep".into()];
        let mut names = Vec::new();
        for r in &extra {
            if let Res::Authorization(a) = r {
                names.push(format!("ns/{}", a.name));
            }
        }
        reviews.authorization_policies.extend(names);
        let mut bound = service("reviews", "10.96.0.1", vec![endpoint("reviews", 9080)]);
        bound.waypoint = "ns/wp".into();
        let mut resources = vec![
            Res::Workload(reviews),
            Res::Workload(workload("wp-1", "10.2.0.2", false)),
            Res::Waypoint(waypoint("wp", &["wp-1"])),
            Res::Service(bound),
            Res::Service(service("plain", "10.96.0.2", vec![endpoint("reviews", 7070)])),
            principals(AuthorizationAction::Allow, "only-sleep", &[SLEEP]),
            principals(AuthorizationAction::Allow, "istio_allow_waypoint_ns_wp", &[WAYPOINT]),
        ];
        resources.extend(extra);
        mesh(resources)
    }

    fn decide(mesh: &Mesh, principal: Option<&str>, port: u16) -> Decision {
        let attrs =
            ConnectionAttrs::new("10.1.0.9".parse().unwrap(), principal, SocketAddr::from(([10, 1, 0, 2], port)));
        mesh.authorize(mesh.workload_by_uid("reviews").unwrap(), &attrs, "cluster.local")
    }

    #[test]
    fn the_waypoint_bound_rule_comes_first_then_policies() {
        let m = cluster(vec![]);
        let implicit = Some("ns/istio_allow_waypoint_ns_wp".to_owned());
        assert_eq!(decide(&m, Some(WAYPOINT), 9080), Decision::Allow { audited: false, by: implicit });
        assert!(
            matches!(decide(&m, Some(SLEEP), 9080), Decision::Deny { by: DenyReason::BypassedWaypoint(_) }),
            "an allowed client going around the waypoint"
        );
        assert!(matches!(decide(&m, None, 9080), Decision::Deny { by: DenyReason::BypassedWaypoint(_) }));
        assert_eq!(
            decide(&m, Some(SLEEP), 7070),
            Decision::Allow { audited: false, by: Some("ns/only-sleep".into()) },
            "a port no bound service uses"
        );
        assert!(matches!(
            decide(&m, Some("cluster.local/ns/ns/sa/other"), 7070),
            Decision::Deny { by: DenyReason::NoAllowMatched { .. } }
        ));
    }

    #[test]
    fn deny_policies_still_apply_to_the_waypoint() {
        let m = cluster(vec![principals(AuthorizationAction::Deny, "no-waypoint", &[WAYPOINT])]);
        assert_eq!(
            decide(&m, Some(WAYPOINT), 9080),
            Decision::Deny { by: DenyReason::DenyPolicy { policy: "ns/no-waypoint".into() } }
        );
    }
}
