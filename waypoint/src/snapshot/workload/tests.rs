//! Bound workloads in the snapshot: indexed by address, a service port synthesized per port on
//! first use, refusals naming the workload, state kept while the resource is unchanged.

use std::sync::Arc;

use ambit_common::{
    api::v1::{
        AppProtocol, BoundWorkload, EndpointTransport, Forward, HttpRoute, PortRoutes, Resource, RouteTable, Update,
        WeightedCluster, http_route, resource::Kind,
    },
    discovery::ResourceSet,
    identity::SpiffeId,
};

use crate::{
    snapshot::{Action, Addressed, CompileError, Snapshot},
    upstream::connect::Transport,
};

const ID: &str = "spiffe://cluster.local/ns/shop/sa/cart";

fn bound(uid: &str, last: u8, transport: EndpointTransport) -> Resource {
    let workload = BoundWorkload {
        uid: uid.into(),
        namespace: "shop".into(),
        name: format!("cart-{uid}"),
        addresses: vec![vec![10, 1, 0, last]],
        identity: if transport == EndpointTransport::Hbone { ID.into() } else { String::new() },
        transport: transport.into(),
        node: "node-1".into(),
    };
    Resource { name: uid.into(), kind: Some(Kind::BoundWorkload(workload)) }
}

fn set(version: u64, resources: Vec<Resource>) -> ResourceSet {
    ResourceSet::default().apply(Update { version, full: true, upserts: resources, ..Default::default() }).unwrap()
}

#[test]
fn a_workload_address_gets_a_synthesized_port_forwarding_to_the_pod_at_that_port() {
    let snapshot = Snapshot::compile(&set(1, vec![bound("u1", 7, EndpointTransport::Hbone)]), None).unwrap();
    let port = snapshot.service("10.1.0.7:8080".parse().unwrap()).expect("the workload's address is served");
    assert_eq!((port.addressed, port.protocol, port.port), (Addressed::Workload, AppProtocol::Unspecified, 8080));
    assert_eq!(port.authz_service(), None, "no service: only the waypoint's own policies apply");
    assert_eq!(port.routes.len(), 1);
    let route = &port.routes[0];
    assert_eq!(route.name, "workload");
    let Action::Forward(forward) = &route.action else { panic!("a forward") };
    assert_eq!(forward.timeout_ms, 0, "no timeout, as Envoy's default inbound route");
    assert_eq!(forward.retry.retries(), 0, "no retries, as Envoy's default inbound route");
    let cluster = &forward.targets[0].cluster;
    assert_eq!(cluster.name, "workload|u1|8080");
    let target = cluster.target(0).expect("one endpoint");
    assert_eq!(target.address, "10.1.0.7:8080".parse().unwrap(), "the pod, at the port the client used");
    assert!(matches!(&target.transport, Transport::Hbone(id) if *id == ID.parse::<SpiffeId>().unwrap()));
    assert!(Arc::ptr_eq(&port.tcp[0][0], cluster), "TCP goes to the same cluster");

    let again = snapshot.service("10.1.0.7:8080".parse().unwrap()).unwrap();
    assert!(Arc::ptr_eq(&port, &again), "synthesized once per address and port");
    let other = snapshot.service("10.1.0.7:9090".parse().unwrap()).unwrap();
    assert_eq!(other.routes[0].name, "workload");
    assert!(snapshot.service("10.1.0.8:8080".parse().unwrap()).is_none(), "an unknown address is not served");
    let dump = snapshot.dump();
    assert_eq!(dump["boundWorkloads"][0]["uid"], "u1");
    assert_eq!(dump["boundWorkloads"][0]["inUse"], serde_json::json!(["10.1.0.7:8080", "10.1.0.7:9090"]));
}

#[test]
fn a_plaintext_workload_is_reached_in_plaintext() {
    let snapshot = Snapshot::compile(&set(1, vec![bound("u1", 7, EndpointTransport::Plaintext)]), None).unwrap();
    let port = snapshot.service("10.1.0.7:80".parse().unwrap()).unwrap();
    let Action::Forward(forward) = &port.routes[0].action else { panic!("a forward") };
    assert!(matches!(forward.targets[0].cluster.target(0).unwrap().transport, Transport::Plaintext));
}

#[test]
fn a_service_vip_wins_over_a_workload_address() {
    let route = HttpRoute {
        name: "default".into(),
        action: Some(http_route::Action::Forward(Forward {
            clusters: vec![WeightedCluster { cluster: "c".into(), weight: 100, ..Default::default() }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let table = RouteTable {
        hostname: "cart.shop.svc.cluster.local".into(),
        vips: vec![vec![10, 1, 0, 7]],
        ports: vec![PortRoutes {
            port: 80,
            protocol: AppProtocol::Http.into(),
            http: vec![route],
            ..Default::default()
        }],
        ..Default::default()
    };
    let cluster = ambit_common::api::v1::Cluster { hostname: "cart".into(), port: 80, ..Default::default() };
    let resources = vec![
        bound("u1", 7, EndpointTransport::Plaintext),
        Resource { name: "cart.shop.svc.cluster.local".into(), kind: Some(Kind::RouteTable(table)) },
        Resource { name: "c".into(), kind: Some(Kind::Cluster(cluster)) },
    ];
    let snapshot = Snapshot::compile(&set(1, resources), None).unwrap();
    assert_eq!(snapshot.service("10.1.0.7:80".parse().unwrap()).unwrap().addressed, Addressed::Service);
    assert_eq!(snapshot.service("10.1.0.7:81".parse().unwrap()).unwrap().addressed, Addressed::Workload);
}

#[test]
fn a_bad_bound_workload_is_refused_naming_it() {
    let mut resource = bound("u1", 7, EndpointTransport::Hbone);
    let Some(Kind::BoundWorkload(w)) = &mut resource.kind else { unreachable!() };
    w.identity = "cart".into();
    let error = Snapshot::compile(&set(1, vec![resource.clone()]), None).err().unwrap();
    assert!(matches!(error, CompileError::Workload(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("u1") && text.contains("shop/cart-u1") && text.contains("identity"), "{text}");
    let Some(Kind::BoundWorkload(w)) = &mut resource.kind else { unreachable!() };
    w.identity = ID.into();
    w.addresses = vec![vec![1, 2, 3]];
    let text = Snapshot::compile(&set(1, vec![resource.clone()]), None).err().unwrap().to_string();
    assert!(text.contains("addresses[0] has 3 bytes"), "{text}");
    let Some(Kind::BoundWorkload(w)) = &mut resource.kind else { unreachable!() };
    w.addresses = vec![vec![10, 1, 0, 7]];
    w.transport = 42;
    let text = Snapshot::compile(&set(1, vec![resource]), None).err().unwrap().to_string();
    assert!(text.contains("transport 42"), "{text}");
}

#[test]
fn an_unchanged_workload_keeps_its_ports_and_a_changed_one_starts_afresh() {
    let first = Snapshot::compile(&set(1, vec![bound("u1", 7, EndpointTransport::Hbone)]), None).unwrap();
    let port = first.service("10.1.0.7:8080".parse().unwrap()).unwrap();
    let same = Snapshot::compile(&set(2, vec![bound("u1", 7, EndpointTransport::Hbone)]), Some(&first)).unwrap();
    assert!(Arc::ptr_eq(&port, &same.service("10.1.0.7:8080".parse().unwrap()).unwrap()), "pools kept");
    let changed = Snapshot::compile(&set(3, vec![bound("u1", 7, EndpointTransport::Plaintext)]), Some(&same)).unwrap();
    let fresh = changed.service("10.1.0.7:8080".parse().unwrap()).unwrap();
    assert!(!Arc::ptr_eq(&port, &fresh));
    let gone = Snapshot::compile(&set(4, vec![]), Some(&changed)).unwrap();
    assert!(gone.service("10.1.0.7:8080".parse().unwrap()).is_none(), "an unbound workload is no longer served");
}

#[test]
fn synthesized_ports_are_bounded_idle_ones_make_room_busy_ones_refuse() {
    let snapshot = Snapshot::compile(&set(1, vec![bound("u1", 7, EndpointTransport::Hbone)]), None).unwrap();
    let at = |port: usize| -> std::net::SocketAddr { format!("10.1.0.7:{}", 1000 + port).parse().unwrap() };
    // Every port held (as in-flight streams hold theirs): the one past the limit is refused.
    let held: Vec<_> = (0..super::MAX_PORTS).map(|p| snapshot.service(at(p)).expect("within the limit")).collect();
    assert!(snapshot.service(at(super::MAX_PORTS)).is_none(), "past the limit with every port busy: refused");
    assert!(snapshot.service(at(0)).is_some(), "ports already made keep being served");
    // Idle ports are dropped to make room.
    drop(held);
    let fresh = snapshot.service(at(super::MAX_PORTS)).expect("idle ports make room");
    assert_eq!(usize::from(fresh.port), 1000 + super::MAX_PORTS);
}
