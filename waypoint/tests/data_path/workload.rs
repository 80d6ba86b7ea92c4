//! Traffic addressed to a workload bound to the waypoint (CONNECT `<pod ip>:<port>`): the
//! waypoint's own authorization policies, then the pod at the port the client used, HTTP
//! detected and anything else relayed; no VirtualService routing.

use std::net::SocketAddr;

use ambit_common::api::v1::{
    AppProtocol, AuthorizationAction, BoundWorkload, EndpointTransport, HttpAuthorization, HttpAuthorizationOperation,
    HttpAuthorizationRule, Resource, StringMatch, UpstreamProtocol, resource::Kind, string_match,
};
use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::harness::*;

const UID: &str = "uid-ratings";

/// The pod `bookinfo/ratings` at 127.0.0.1, reached as `transport` (HBONE expecting `identity`).
fn bound(transport: EndpointTransport, identity: &str) -> Resource {
    let workload = BoundWorkload {
        uid: UID.into(),
        namespace: "bookinfo".into(),
        name: "ratings".into(),
        addresses: vec![vec![127, 0, 0, 1]],
        identity: identity.into(),
        transport: transport.into(),
        node: "node-1".into(),
    };
    Resource { name: UID.into(), kind: Some(Kind::BoundWorkload(workload)) }
}

/// DENY requests for `path_prefix`, attached to the waypoint (no hostnames) or to `hostnames`.
fn deny(name: &str, path_prefix: &str, hostnames: Vec<String>) -> Resource {
    let policy = HttpAuthorization {
        name: name.into(),
        namespace: "bookinfo".into(),
        action: AuthorizationAction::Deny.into(),
        hostnames,
        rules: vec![HttpAuthorizationRule {
            to: vec![HttpAuthorizationOperation {
                paths: vec![StringMatch { kind: Some(string_match::Kind::Prefix(path_prefix.into())) }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        not_enforced: vec![],
    };
    Resource { name: format!("bookinfo/{name}"), kind: Some(Kind::HttpAuthorization(policy)) }
}

fn pod(upstream: &Upstream) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], upstream.addr.port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_bound_workload_gets_the_waypoints_policy_and_reaches_the_pod_at_its_port() {
    let (ratings, reviews) = (Upstream::ok("ratings", false).await, Upstream::ok("reviews", false).await);
    let mesh = Mesh::start().await;
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(cluster("v1", vec![reviews.endpoint()], UpstreamProtocol::Http1)),
        bound(EndpointTransport::Plaintext, ""),
        deny("deny-admin", "/admin", vec![]),
        deny("reviews-only", "/", vec![HOST.into()]),
    ])
    .unwrap();

    let mut client = mesh.http1_to(pod(&ratings)).await;
    let (status, headers, body) = read(send1(&mut client, get("/ratings/1", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ratings"), "{headers:?}");
    let record = mesh.last_record().await;
    assert_eq!(record.route_name.as_deref(), Some("workload"));
    let cluster = format!("workload|{UID}|{}", ratings.addr.port());
    assert_eq!(record.cluster.as_deref(), Some(cluster.as_str()));
    assert_eq!(record.destination, pod(&ratings).to_string());
    assert_eq!(record.upstream_host, Some(pod(&ratings).to_string()), "the pod, at the port the client used");
    assert_eq!((record.protocol, record.attempts, record.response_flags.as_str()), ("HTTP/1.1", 1, "-"));
    assert_eq!(ratings.seen()[0].authority, format!("{HOST}:{PORT}"), "the Host header is passed on");

    let (status, _, body) = read(send1(&mut client, get("/admin/x", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied"));
    assert_eq!(mesh.last_record().await.detail.as_deref(), Some("denied by DENY policy bookinfo/deny-admin"));
    assert_eq!(ratings.requests(), 1, "a denied request never reaches the pod");

    // The service keeps its own policies: the one limited to it denies there.
    let mut service = mesh.http1().await;
    let (status, _, _) = read(send1(&mut service, get("/", &[])).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a policy for the service applies to the service");

    // HTTP/2 with prior knowledge is detected too, and passed on as HTTP/2 (the client's
    // protocol, as Istio's inbound clusters for sniffed ports do), here to another port of the pod.
    let grpc_port = Upstream::ok("ratings-h2", true).await;
    let mut h2 = mesh.http2_to(pod(&grpc_port)).await;
    let (status, _, body) = read(h2.send_request(get2("/ratings/2", &[])).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ratings-h2"));
    let record = mesh.last_record().await;
    assert_eq!(record.protocol, "HTTP/2");
    assert_eq!(record.cluster, Some(format!("workload|{UID}|{}", grpc_port.addr.port())), "one cluster per port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_workload_is_reached_over_hbone_presenting_its_identity() {
    let ratings = Upstream::ok("ratings", false).await;
    let ca = ambit_common::identity::testing::TestCa::new(TD);
    let pod_id = id("bookinfo", "ratings");
    let hbone = HboneEndpoint::start(&ca, &pod_id).await;
    let mesh = Mesh::start_on(ca, hbone.port).await;
    mesh.apply(vec![bound(EndpointTransport::Hbone, &pod_id.to_string())]).unwrap();
    let mut client = mesh.http1_to(pod(&ratings)).await;
    for _ in 0..2 {
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ratings"));
    }
    assert_eq!(hbone.clients.lock().unwrap().as_slice(), [id("bookinfo", "waypoint")], "one mTLS connection");
    assert_eq!(ratings.connections(), 1, "the upstream connection is pooled");

    // A pod that must present another identity is refused at the handshake: 503 UF.
    mesh.apply(vec![bound(EndpointTransport::Hbone, &id("bookinfo", "impostor").to_string())]).unwrap();
    let mut client = mesh.http1_to(pod(&ratings)).await;
    let (status, _, _) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!((status, mesh.last_record().await.response_flags.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "UF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_a_bound_workload_is_relayed_and_an_unknown_address_is_404() {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = tcp.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let mesh = Mesh::start().await;
    mesh.apply(vec![bound(EndpointTransport::Plaintext, ""), deny("deny-all-http", "/", vec![])]).unwrap();
    let mut raw = mesh.tunnel(SocketAddr::from(([127, 0, 0, 1], echo_port))).await.unwrap();
    raw.write_all(b"\x00\x01 not http at all").await.unwrap();
    let mut echoed = [0u8; 18];
    raw.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x00\x01 not http at all", "relayed to the pod's port; L7 policy does not apply to TCP");

    let error = mesh.tunnel("127.0.0.2:80".parse().unwrap()).await.err().expect("refused");
    assert!(matches!(error, ambit_common::hbone::HboneError::Refused { status: 404, .. }), "{error}");
}
