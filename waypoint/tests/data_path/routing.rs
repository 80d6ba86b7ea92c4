//! Where requests go: matches, weights, rewrites, local answers, authorization, protocols,
//! connection reuse, HBONE endpoints.

use ambit_common::api::v1::{
    AppProtocol, AuthorizationAction, Cluster, ConnectionPool, DirectResponse, HeaderMatch, HttpAuthorization,
    HttpAuthorizationOperation, HttpAuthorizationRule, HttpMatch, HttpRoute, PortRoutes, Redirect, Resource,
    StringMatch, StringMatcher, TcpRoute, UpstreamProtocol, http_route, resource::Kind, string_match, string_matcher,
};
use futures::future::join_all;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn exact(value: &str) -> Option<StringMatcher> {
    Some(StringMatcher { kind: Some(string_matcher::Kind::Exact(value.into())) })
}

fn prefix(value: &str) -> Option<StringMatcher> {
    Some(StringMatcher { kind: Some(string_matcher::Kind::Prefix(value.into())) })
}

fn upstream_of(headers: &http::HeaderMap) -> String {
    headers.get("x-upstream").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_matches_and_prefixes_pick_the_route() {
    let (v1, v2, v3) =
        (Upstream::ok("v1", false).await, Upstream::ok("v2", false).await, Upstream::ok("v3", false).await);
    let mesh = Mesh::start().await;
    let jason = HttpRoute {
        r#match: Some(HttpMatch {
            headers: vec![HeaderMatch { name: "end-user".into(), value: exact("jason") }],
            ..Default::default()
        }),
        ..forward_route("jason", vec![to("v2", 100)])
    };
    let api = HttpRoute {
        r#match: Some(HttpMatch { uri: prefix("/api/"), ..Default::default() }),
        ..forward_route("api", vec![to("v3", 100)])
    };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![jason, api, forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        cluster_resource(cluster("v2", vec![v2.endpoint()], UpstreamProtocol::Http1)),
        cluster_resource(cluster("v3", vec![v3.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let cases = [
        (get("/", &[("end-user", "jason")]), "v2", "jason"),
        (get("/api/items", &[]), "v3", "api"),
        (get("/apix", &[]), "v1", "default"),
        (get("/", &[("end-user", "bob")]), "v1", "default"),
    ];
    for (request, upstream, route) in cases {
        let (status, headers, _) = read(send1(&mut client, request).await).await;
        assert_eq!((status, upstream_of(&headers)), (StatusCode::OK, upstream.to_owned()));
        let record = mesh.last_record().await;
        assert_eq!(record.route_name.as_deref(), Some(route));
        assert_eq!((record.protocol, record.attempts, record.response_flags.as_str()), ("HTTP/1.1", 1, "-"));
    }
    assert_eq!(v2.seen()[0].authority, format!("{HOST}:{PORT}"), "the Host header is passed on");
    assert_eq!(mesh.last_record().await.source_identity.as_deref(), Some("spiffe://cluster.local/ns/client/sa/sleep"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_follows_the_weights() {
    let (v1, v2) = (Upstream::ok("v1", true).await, Upstream::ok("v2", true).await);
    let mesh = Mesh::start().await;
    mesh.apply(vec![
        table(AppProtocol::Http2, vec![forward_route("split", vec![to("v1", 80), to("v2", 20)])]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http2)),
        cluster_resource(cluster("v2", vec![v2.endpoint()], UpstreamProtocol::Http2)),
    ])
    .unwrap();
    let client = mesh.http2().await;
    let mut names = Vec::new();
    for _ in 0..20 {
        let batch = (0..100).map(|_| {
            let mut client = client.clone();
            async move { read(client.send_request(get2("/", &[])).await.unwrap()).await }
        });
        names.extend(join_all(batch).await.into_iter().map(|(_, headers, _)| upstream_of(&headers)));
    }
    let counts = tally(names);
    let v2_share = counts.get("v2").copied().unwrap_or(0);
    assert_eq!(counts.values().sum::<usize>(), 2000);
    // 20 % of 2000 is 400; the standard deviation is about 18, so ±100 is over five of them.
    assert!((300..=500).contains(&v2_share), "v2 got {v2_share} of 2000: {counts:?}");
    assert_eq!((v1.connections(), v2.connections()), (1, 1), "one multiplexed HTTP/2 connection per endpoint");
    assert!(mesh.records().await.iter().all(|r| r.protocol == "HTTP/2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upstream_connections_are_kept_alive_and_reused() {
    let v1 = Upstream::ok("v1", false).await;
    let mesh = Mesh::start().await;
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    for _ in 0..5 {
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
    }
    assert_eq!((v1.requests(), v1.connections()), (5, 1), "five requests on one kept-alive connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses_are_answered_by_the_waypoint() {
    let mesh = Mesh::start().await;
    let redirect = HttpRoute {
        name: "moved".into(),
        r#match: Some(HttpMatch { uri: prefix("/old"), ..Default::default() }),
        action: Some(http_route::Action::Redirect(Redirect {
            path: "/new".into(),
            authority: "ratings".into(),
            status: 301,
            ..Default::default()
        })),
        ..Default::default()
    };
    let direct = HttpRoute {
        name: "teapot".into(),
        action: Some(http_route::Action::DirectResponse(DirectResponse {
            status: 418,
            body: b"short and stout".to_vec(),
        })),
        ..Default::default()
    };
    mesh.apply(vec![table(AppProtocol::Http, vec![redirect, direct])]).unwrap();
    let mut client = mesh.http1().await;
    let (status, headers, _) = read(send1(&mut client, get("/old?x=1", &[])).await).await;
    assert_eq!(
        (status, &headers["location"]),
        (StatusCode::MOVED_PERMANENTLY, &"http://ratings/new?x=1".parse::<http::HeaderValue>().unwrap())
    );
    let (status, _, body) = read(send1(&mut client, get("/other", &[])).await).await;
    assert_eq!((status.as_u16(), body.as_str()), (418, "short and stout"));
    assert_eq!(mesh.last_record().await.attempts, 0, "nothing went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_denies_with_403_and_no_route_is_404() {
    let v1 = Upstream::ok("v1", false).await;
    let mesh = Mesh::start().await;
    let deny_admin = HttpAuthorization {
        name: "deny-admin".into(),
        namespace: "bookinfo".into(),
        action: AuthorizationAction::Deny as i32,
        hostnames: vec![],
        rules: vec![HttpAuthorizationRule {
            to: vec![HttpAuthorizationOperation {
                paths: vec![StringMatch { kind: Some(string_match::Kind::Prefix("/admin".into())) }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        not_enforced: vec![],
    };
    let only_api = HttpRoute {
        r#match: Some(HttpMatch { uri: prefix("/"), method: exact("GET"), ..Default::default() }),
        response_headers: vec![ambit_common::api::v1::HeaderOperation {
            action: ambit_common::api::v1::HeaderAction::Set as i32,
            name: "x-route".into(),
            value: "get".into(),
        }],
        ..forward_route("get", vec![to("v1", 100)])
    };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![only_api]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        Resource { name: "bookinfo/deny-admin".into(), kind: Some(Kind::HttpAuthorization(deny_admin)) },
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let (status, headers, body) = read(send1(&mut client, get("/admin/users", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, "RBAC: access denied"));
    assert_eq!(headers["x-route"], "get", "the matched route's response headers, as on Envoy's 403");
    let denied = mesh.last_record().await;
    assert!(denied.detail.unwrap().contains("bookinfo/deny-admin"));
    assert_eq!(denied.route_name.as_deref(), Some("get"));
    let post =
        http::Request::post("/x").header("host", HOST).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
    let (status, headers, _) = read(send1(&mut client, post).await).await;
    assert_eq!((status, mesh.last_record().await.response_flags.as_str()), (StatusCode::NOT_FOUND, "NR"));
    assert!(headers.get("x-route").is_none());
    // No route and denied: the denial comes first.
    let post_admin = http::Request::post("/admin")
        .header("host", HOST)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, _) = read(send1(&mut client, post_admin).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(v1.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_an_unknown_service_is_refused() {
    let mesh = Mesh::start().await;
    mesh.apply(vec![table(AppProtocol::Http, vec![])]).unwrap();
    let error = mesh.tunnel("10.96.0.99:80".parse().unwrap()).await.err().expect("refused");
    assert!(matches!(error, ambit_common::hbone::HboneError::Refused { status: 404, .. }), "{error}");
    let error = mesh.tunnel(std::net::SocketAddr::from((VIP, 81))).await.err().expect("refused");
    assert!(matches!(error, ambit_common::hbone::HboneError::Refused { status: 404, .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hbone_endpoint_is_reached_with_mtls_as_the_waypoint() {
    let v1 = Upstream::ok("v1", false).await;
    let ca = ambit_common::identity::testing::TestCa::new(TD);
    let endpoint_id = id("bookinfo", "reviews");
    let hbone = HboneEndpoint::start(&ca, &endpoint_id).await;
    let mesh = Mesh::start_on(ca, hbone.port).await;
    let mut endpoint = v1.endpoint();
    endpoint.transport = ambit_common::api::v1::EndpointTransport::Hbone as i32;
    endpoint.identity = endpoint_id.to_string();
    let mut wrong = endpoint.clone();
    wrong.identity = id("bookinfo", "impostor").to_string();
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(cluster("v1", vec![endpoint], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    for _ in 0..3 {
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
    }
    assert_eq!(
        hbone.clients.lock().unwrap().as_slice(),
        [id("bookinfo", "waypoint")],
        "one mTLS connection, as the waypoint"
    );
    assert_eq!(v1.connections(), 1, "the upstream HTTP/1.1 connection in the tunnel is reused");

    // An endpoint that must present another identity is refused at the TLS handshake: 503 UF.
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(cluster("v1", vec![wrong], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let (status, _, _) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!((status, mesh.last_record().await.response_flags.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "UF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_ports_detect_http_and_tcp_and_tcp_routes_relay_bytes() {
    let v1 = Upstream::ok("v1", false).await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut echo_endpoint = v1.endpoint();
    echo_endpoint.port = u32::from(echo_port);
    let mesh = Mesh::start().await;
    let port = PortRoutes {
        port: u32::from(PORT),
        name: "undeclared".into(),
        protocol: AppProtocol::Unspecified as i32,
        http: vec![forward_route("default", vec![to("v1", 100)])],
        tcp: vec![TcpRoute { matches: vec![], clusters: vec![to("echo", 100)] }],
    };
    mesh.apply(vec![
        table_with(port),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        cluster_resource(cluster("echo", vec![echo_endpoint], UpstreamProtocol::Unspecified)),
    ])
    .unwrap();
    let mut h1 = mesh.http1().await;
    let (status, _, body) = read(send1(&mut h1, get("/", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"), "HTTP/1.1 detected");
    let mut h2 = mesh.http2().await;
    let (status, _, body) = read(h2.send_request(get2("/", &[])).await.unwrap()).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"), "h2c prior knowledge detected");
    assert_eq!(mesh.last_record().await.protocol, "HTTP/2");
    let mut raw = mesh.tunnel(vip()).await.unwrap();
    raw.write_all(b"\x00\x01 not http at all").await.unwrap();
    let mut echoed = [0u8; 18];
    raw.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x00\x01 not http at all", "anything else is relayed by the TCP route");
}

/// What the TCP server behind [`tcp_route_to_reporting_server`] saw of a connection.
#[derive(Debug, PartialEq, Eq)]
enum ServerSaw {
    /// Bytes read so far.
    Bytes(usize),
    /// How reading ended: `Ok(bytes)` at a clean end of stream, `Err(kind)` on a reset.
    End(Result<usize, std::io::ErrorKind>),
}

/// A TCP route to a plain TCP server on loopback that reports what it reads of each connection
/// and how reading ended. With `reset_after`, the server resets the connection itself once it
/// has read that many bytes. `idle_timeout_ms`: the cluster's TCP idle timeout (0: none).
async fn tcp_route_to_reporting_server(
    reset_after: Option<usize>,
    idle_timeout_ms: u64,
) -> (Mesh, tokio::sync::mpsc::UnboundedReceiver<ServerSaw>) {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = loopback_endpoint("raw", server.local_addr().unwrap().port());
    let (report, reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = server.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut total = 0;
                let end = loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) => break Ok(total),
                        Ok(n) => total += n,
                        Err(e) => break Err(e.kind()),
                    }
                    let _ = report.send(ServerSaw::Bytes(total));
                    if reset_after.is_some_and(|limit| total >= limit) {
                        ambit_common::relay::reset_tcp(&tcp);
                        break Ok(total);
                    }
                };
                let _ = report.send(ServerSaw::End(end));
            });
        }
    });
    let mesh = Mesh::start().await;
    let port = PortRoutes {
        port: u32::from(PORT),
        name: "tcp".into(),
        protocol: AppProtocol::Tcp as i32,
        tcp: vec![TcpRoute { matches: vec![], clusters: vec![to("raw", 100)] }],
        ..Default::default()
    };
    let pool = ConnectionPool { tcp_idle_timeout_ms: idle_timeout_ms, ..Default::default() };
    let raw = Cluster { connection_pool: Some(pool), ..cluster("raw", vec![endpoint], UpstreamProtocol::Unspecified) };
    mesh.apply(vec![table_with(port), cluster_resource(raw)]).unwrap();
    (mesh, reports)
}

/// The next `End` report, skipping progress.
async fn end_of(
    reports: &mut tokio::sync::mpsc::UnboundedReceiver<ServerSaw>,
) -> Option<Result<usize, std::io::ErrorKind>> {
    while let Some(saw) = reports.recv().await {
        if let ServerSaw::End(end) = saw {
            return Some(end);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_pass_a_clean_close_as_a_close_and_a_reset_as_a_reset() {
    use ambit_common::relay::{Duplex, Reset};
    let (mesh, mut reports) = tcp_route_to_reporting_server(None, 0).await;
    // A half-close from the client reaches the server as the end of the stream.
    let mut clean = mesh.tunnel(vip()).await.unwrap();
    clean.write_all(b"hello").await.unwrap();
    clean.shutdown().await.unwrap();
    assert_eq!(end_of(&mut reports).await, Some(Ok(5)), "a clean close is passed on as a clean close");
    // A reset of the client's tunnel (RST_STREAM) reaches the server as a TCP reset, not as an
    // end of stream that would make a cut-off upload look complete.
    let (_read, mut write) = mesh.tunnel_stream(vip()).await.unwrap().into_split();
    write.write_all(b"partial upload").await.unwrap();
    write.flush().await.unwrap();
    while reports.recv().await != Some(ServerSaw::Bytes(14)) {}
    write.reset();
    assert_eq!(
        end_of(&mut reports).await,
        Some(Err(std::io::ErrorKind::ConnectionReset)),
        "the client's reset reaches the server as a reset"
    );
    // Both connections are recorded: bytes each way, how each ended, where it went.
    let records = mesh.connection_records(2).await;
    let summary: Vec<_> = records.iter().map(|r| (r.end, r.bytes_from_source, r.bytes_to_source)).collect();
    assert_eq!(summary, [("completed", 5, 0), ("sourceReset", 14, 0)], "{records:?}");
    let first = &records[0];
    assert_eq!((first.cluster.as_deref(), first.response_flags.as_str()), (Some(cluster_name("raw").as_str()), "-"));
    assert!(first.upstream_host.as_deref().is_some_and(|h| h.starts_with("127.0.0.1:")), "{first:?}");
    assert_eq!(first.source_identity.as_deref(), Some("spiffe://cluster.local/ns/client/sa/sleep"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tcp_connection_is_recorded_with_envoys_flag() {
    // The only endpoint listens nowhere: connecting fails (UF).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = loopback_endpoint("gone", closed.local_addr().unwrap().port());
    drop(closed);
    let mesh = Mesh::start().await;
    let port = PortRoutes {
        port: u32::from(PORT),
        name: "tcp".into(),
        protocol: AppProtocol::Tcp as i32,
        tcp: vec![TcpRoute { matches: vec![], clusters: vec![to("gone", 100)] }],
        ..Default::default()
    };
    mesh.apply(vec![
        table_with(port),
        cluster_resource(cluster("gone", vec![endpoint], UpstreamProtocol::Unspecified)),
    ])
    .unwrap();
    let mut tunnel = mesh.tunnel(vip()).await.unwrap();
    let _ = tunnel.write_all(b"hello?").await;
    let mut buf = [0u8; 8];
    let read = tunnel.read(&mut buf).await;
    assert!(!matches!(read, Ok(n) if n > 0), "nothing comes back: {read:?}");
    let record = mesh.connection_records(1).await.remove(0);
    assert_eq!((record.end, record.response_flags.as_str()), ("refused", "UF"), "{record:?}");
    assert!(record.detail.as_deref().is_some_and(|d| d.contains("connect")), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_upstreams_reset_reaches_the_client_as_a_reset() {
    let (mesh, mut reports) = tcp_route_to_reporting_server(Some(4), 0).await;
    let mut tunnel = mesh.tunnel(vip()).await.unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    assert_eq!(end_of(&mut reports).await, Some(Ok(4)));
    let mut buf = [0u8; 16];
    let read = tunnel.read(&mut buf).await;
    assert!(read.is_err(), "the server's reset reaches the client as an error, not an end of stream: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_connection_idle_for_the_clusters_idle_timeout_is_reset_both_ways() {
    // connectionPool.tcp.idleTimeout: 300ms. Bytes move once, then nothing: both sides are reset.
    let (mesh, mut reports) = tcp_route_to_reporting_server(None, 300).await;
    let mut tunnel = mesh.tunnel(vip()).await.unwrap();
    tunnel.write_all(b"once").await.unwrap();
    let mut buf = [0u8; 16];
    let read = tunnel.read(&mut buf).await;
    assert!(read.is_err(), "the idle connection is reset towards the client: {read:?}");
    assert_eq!(end_of(&mut reports).await, Some(Err(std::io::ErrorKind::ConnectionReset)), "and towards the server");
    assert_eq!(mesh.connection_records(1).await[0].end, "idleTimeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_idle_for_the_stream_idle_timeout_is_closed() {
    // An upstream that switches protocols and then echoes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|mut request: http::Request<hyper::body::Incoming>| async move {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let mut io = hyper_util::rt::TokioIo::new(upgrade.await.unwrap());
                let (mut read, mut write) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
            let response = http::Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let io = hyper_util::rt::TokioIo::new(tcp);
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades().await;
    });
    let endpoint = loopback_endpoint("ws", port);
    let ca = ambit_common::identity::testing::TestCa::new(TD);
    let mesh = Mesh::start_with(ca, 15008, Some(std::time::Duration::from_millis(300))).await;
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("ws", vec![to("ws", 100)])]),
        cluster_resource(cluster("ws", vec![endpoint], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let io = hyper_util::rt::TokioIo::new(mesh.tunnel(vip()).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection.with_upgrades());
    let request = http::Request::get("/ws")
        .header("host", HOST)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut tunnel = hyper_util::rt::TokioIo::new(hyper::upgrade::on(&mut response).await.unwrap());
    tunnel.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping", "the tunnel works");
    // Then nothing moves: the waypoint closes it (a generous bound, only so a failure does not hang).
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), tunnel.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the idle tunnel is closed: {closed:?}");
}
