//! What happens when things go wrong: timeouts, retries, faults, mirrors, circuit breakers,
//! outlier detection, and a configuration that does not compile.

use std::{sync::Arc, time::Duration};

use ambit_common::api::v1::{
    AppProtocol, ConnectionPool, Fault, FaultAbort, FaultDelay, Forward, HeaderAction, HeaderOperation, HttpRoute,
    Mirror, OutlierDetection, RegexRewrite, RetryOn, RetryPolicy, UpstreamProtocol, WeightedCluster, fault_abort,
    forward::PathRewrite, http_route,
};
use futures::future::join_all;
use http::StatusCode;
use tokio::sync::Notify;

use crate::harness::*;

fn with_forward(name: &str, forward: Forward) -> HttpRoute {
    HttpRoute { name: name.into(), action: Some(http_route::Action::Forward(forward)), ..Default::default() }
}

/// An upstream that holds every request until `release` is notified.
async fn held(name: &'static str, release: Arc<Notify>) -> Upstream {
    Upstream::start(
        name,
        false,
        Arc::new(move |_, _| {
            let release = release.clone();
            Box::pin(async move {
                release.notified().await;
                reply(200, "late")
            })
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_answers_504_ut() {
    let release = Arc::new(Notify::new());
    let slow = held("slow", release.clone()).await;
    let mesh = Mesh::start().await;
    let forward = Forward { clusters: vec![to("slow", 100)], timeout_ms: 200, ..Default::default() };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![with_forward("slow", forward)]),
        cluster_resource(cluster("slow", vec![slow.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"));
    assert_eq!(mesh.last_record().await.response_flags, "UT");
    release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waypoints_own_replies_after_routing_carry_the_response_header_operations() {
    let release = Arc::new(Notify::new());
    let slow = held("slow", release.clone()).await;
    let mesh = Mesh::start().await;
    let set = |name: &str, value: &str| HeaderOperation {
        action: HeaderAction::Set as i32,
        name: name.into(),
        value: value.into(),
    };
    let target = WeightedCluster { response_headers: vec![set("x-cluster", "slow")], ..to("slow", 100) };
    let timed_out = HttpRoute {
        response_headers: vec![set("x-route", "timed")],
        r#match: Some(ambit_common::api::v1::HttpMatch {
            headers: vec![ambit_common::api::v1::HeaderMatch { name: "x-timeout".into(), value: None }],
            ..Default::default()
        }),
        ..with_forward("timed", Forward { clusters: vec![target], timeout_ms: 200, ..Default::default() })
    };
    let aborted = HttpRoute {
        response_headers: vec![set("x-route", "aborted")],
        fault: Some(Fault {
            delay: None,
            abort: Some(FaultAbort { status: Some(fault_abort::Status::HttpStatus(503)), per_million: 1_000_000 }),
        }),
        r#match: Some(ambit_common::api::v1::HttpMatch {
            headers: vec![ambit_common::api::v1::HeaderMatch { name: "x-abort".into(), value: None }],
            ..Default::default()
        }),
        ..forward_route("aborted", vec![to("slow", 100)])
    };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![timed_out, aborted]),
        cluster_resource(cluster("slow", vec![slow.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    // 504 UT, made by the waypoint after the route and its cluster were chosen: both apply.
    let (status, headers, _) = read(send1(&mut client, get("/", &[("x-timeout", "1")])).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        (headers["x-route"].as_bytes(), headers["x-cluster"].as_bytes()),
        (&b"timed"[..], &b"slow"[..]),
        "{headers:?}"
    );
    // A fault's abort, made before a cluster is chosen: the route's operations only.
    let (status, headers, _) = read(send1(&mut client, get("/", &[("x-abort", "1")])).await).await;
    assert_eq!(
        (status, headers["x-route"].as_bytes()),
        (StatusCode::SERVICE_UNAVAILABLE, &b"aborted"[..]),
        "{headers:?}"
    );
    assert!(headers.get("x-cluster").is_none(), "{headers:?}");
    // No route: nothing to apply.
    let (status, headers, _) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.get("x-route").is_none(), "{headers:?}");
    release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_try_carries_the_request_id_the_proto_its_attempt_number_and_its_timeout() {
    // Records each request's headers; fails the first one, so the route's retry makes a second.
    let seen: Arc<std::sync::Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let upstream = Upstream::start(
        "flaky",
        false,
        Arc::new(move |n, parts| {
            record.lock().unwrap().push(parts.headers.clone());
            Box::pin(async move { if n == 0 { reply(503, "busy") } else { reply(200, "ok") } })
        }),
    )
    .await;
    let mesh = Mesh::start().await;
    let retry = RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 5_000,
        retry_on: vec![RetryOn::RetryOn5xx as i32],
        backoff_base_interval_ms: 1,
        ..Default::default()
    };
    let forward =
        Forward { clusters: vec![to("flaky", 100)], retry: Some(retry), timeout_ms: 10_000, ..Default::default() };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![with_forward("flaky", forward)]),
        cluster_resource(cluster("flaky", vec![upstream.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let (status, _, _) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!(status, StatusCode::OK);
    let tries = seen.lock().unwrap().clone();
    assert_eq!(tries.len(), 2, "one retry");
    let header = |i: usize, name: &str| tries[i].get(name).map(|v| v.to_str().unwrap().to_owned());
    let id = header(0, "x-request-id").expect("the waypoint made a request id");
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a version 4 UUID: {id}");
    assert_eq!(header(1, "x-request-id").as_deref(), Some(id.as_str()), "the retry carries the same id");
    assert_eq!(
        (header(0, "x-envoy-attempt-count"), header(1, "x-envoy-attempt-count")),
        (Some("1".into()), Some("2".into()))
    );
    assert_eq!(header(0, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(header(1, "x-envoy-expected-rq-timeout-ms").as_deref(), Some("5000"), "the per-try timeout");
    assert_eq!(mesh.last_record().await.request_id, id, "the access record has it too");

    // A client's own request id is kept.
    let (status, _, _) = read(send1(&mut client, get("/", &[("x-request-id", "client-chosen-1")])).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.lock().unwrap()[2]["x-request-id"], "client-chosen-1");
    assert_eq!(mesh.last_record().await.request_id, "client-chosen-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_made_until_success_or_the_limit_urx() {
    // Fails the first two requests, then succeeds.
    let flaky = Upstream::start(
        "flaky",
        false,
        Arc::new(|n, _| Box::pin(async move { if n < 2 { reply(503, "busy") } else { reply(200, "ok") } })),
    )
    .await;
    let broken = Upstream::start("broken", false, Arc::new(|_, _| Box::pin(async { reply(503, "down") }))).await;
    let mesh = Mesh::start().await;
    let retry = RetryPolicy {
        attempts: 2,
        retry_on: vec![RetryOn::RetryOn5xx as i32],
        backoff_base_interval_ms: 1,
        ..Default::default()
    };
    let flaky_route = HttpRoute {
        r#match: Some(ambit_common::api::v1::HttpMatch {
            uri: Some(ambit_common::api::v1::StringMatcher {
                kind: Some(ambit_common::api::v1::string_matcher::Kind::Prefix("/flaky".into())),
            }),
            ..Default::default()
        }),
        ..with_forward(
            "flaky",
            Forward { clusters: vec![to("flaky", 100)], retry: Some(retry.clone()), ..Default::default() },
        )
    };
    let broken_route =
        with_forward("broken", Forward { clusters: vec![to("broken", 100)], retry: Some(retry), ..Default::default() });
    mesh.apply(vec![
        table(AppProtocol::Http, vec![flaky_route, broken_route]),
        cluster_resource(cluster("flaky", vec![flaky.endpoint()], UpstreamProtocol::Http1)),
        cluster_resource(cluster("broken", vec![broken.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let (status, _, body) = read(send1(&mut client, get("/flaky", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(flaky.requests(), 3, "two retries reached the upstream");
    let record = mesh.last_record().await;
    assert_eq!((record.attempts, record.response_flags.as_str()), (3, "-"));

    let (status, _, body) = read(send1(&mut client, get("/other", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "down"), "the last response is passed on");
    assert_eq!(broken.requests(), 3);
    let record = mesh.last_record().await;
    assert_eq!((record.attempts, record.response_flags.as_str()), (3, "URX"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_abort_at_their_rate_and_delay() {
    let v1 = Upstream::ok("v1", true).await;
    let mesh = Mesh::start().await;
    let abort_half = HttpRoute {
        fault: Some(Fault {
            delay: None,
            abort: Some(FaultAbort { status: Some(fault_abort::Status::HttpStatus(503)), per_million: 500_000 }),
        }),
        r#match: Some(ambit_common::api::v1::HttpMatch {
            headers: vec![ambit_common::api::v1::HeaderMatch { name: "x-abort".into(), value: None }],
            ..Default::default()
        }),
        ..forward_route("abort", vec![to("v1", 100)])
    };
    let delay_all = HttpRoute {
        fault: Some(Fault { delay: Some(FaultDelay { fixed_delay_ms: 20, per_million: 1_000_000 }), abort: None }),
        ..forward_route("delay", vec![to("v1", 100)])
    };
    mesh.apply(vec![
        table(AppProtocol::Http2, vec![abort_half, delay_all]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http2)),
    ])
    .unwrap();
    let client = mesh.http2().await;
    let results = join_all((0..400).map(|_| {
        let mut client = client.clone();
        async move { read(client.send_request(get2("/", &[("x-abort", "1")])).await.unwrap()).await }
    }))
    .await;
    let aborted: Vec<_> = results.iter().filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE).collect();
    // Half of 400; the standard deviation is 10.
    assert!((140..=260).contains(&aborted.len()), "{} of 400 aborted", aborted.len());
    assert!(aborted.iter().all(|(_, _, body)| body == "fault filter abort"));
    assert_eq!(v1.requests(), 400 - aborted.len(), "aborted requests never reach the upstream");
    let flags = tally(mesh.records().await.into_iter().map(|r| r.response_flags));
    assert_eq!(flags.get("FI").copied(), Some(aborted.len()));

    let mut client = client.clone();
    let (status, _, _) = read(client.send_request(get2("/", &[])).await.unwrap()).await;
    assert_eq!((status, mesh.last_record().await.response_flags.as_str()), (StatusCode::OK, "DI"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_get_a_shadow_copy_that_never_affects_the_response() {
    let v1 = Upstream::ok("v1", false).await;
    let release = Arc::new(Notify::new());
    let shadow = held("shadow", release.clone()).await;
    let mesh = Mesh::start().await;
    let forward = Forward {
        clusters: vec![to("v1", 100)],
        mirrors: vec![Mirror { cluster: cluster_name("shadow"), per_million: 1_000_000 }],
        path_rewrite: Some(PathRewrite::RegexRewrite(RegexRewrite {
            pattern: "^/v1/".into(),
            substitution: "/".into(),
        })),
        ..Default::default()
    };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![with_forward("mirrored", forward)]),
        cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        cluster_resource(cluster("shadow", vec![shadow.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let post = http::Request::post("/v1/items")
        .header("host", format!("{HOST}:{PORT}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"payload")))
        .unwrap();
    // The shadow never answers while we wait: the response must not wait for it.
    let (status, _, body) = read(send1(&mut client, post).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
    assert_eq!(mesh.last_record().await.mirrored, [cluster_name("shadow")]);
    let mut waited = 0;
    while shadow.seen().is_empty() && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let seen = shadow.seen();
    assert_eq!(seen[0].authority, format!("{HOST}-shadow:{PORT}"));
    assert_eq!(seen[0].path, "/items", "the copy is the rewritten request");
    assert_eq!(v1.seen()[0].authority, format!("{HOST}:{PORT}"), "the original keeps its authority");
    release.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breakers_answer_503_uo_when_connections_and_pending_are_full() {
    let release = Arc::new(Notify::new());
    let slow = held("slow", release.clone()).await;
    let mesh = Mesh::start().await;
    let mut slow_cluster = cluster("slow", vec![slow.endpoint()], UpstreamProtocol::Http1);
    slow_cluster.connection_pool =
        Some(ConnectionPool { max_connections: 1, http1_max_pending_requests: 1, ..Default::default() });
    mesh.apply(vec![
        table(AppProtocol::Http2, vec![forward_route("slow", vec![to("slow", 100)])]),
        cluster_resource(slow_cluster),
    ])
    .unwrap();
    let client = mesh.http2().await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..4 {
        let (mut client, done_tx) = (client.clone(), done_tx.clone());
        tokio::spawn(async move {
            let response = read(client.send_request(get2("/", &[])).await.unwrap()).await;
            let _ = done_tx.send(response);
        });
    }
    // One request holds the connection, one waits for it; the other two overflow at once.
    let mut early = Vec::new();
    for _ in 0..2 {
        early.push(done_rx.recv().await.unwrap());
    }
    for (status, _, body) in &early {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.ends_with("reset reason: overflow"), "{body}");
    }
    let uo = mesh.records().await.into_iter().filter(|r| r.response_flags == "UO").count();
    assert_eq!(uo, 2);
    // Released one by one: the held request answers, then the pending one gets the connection.
    let mut late = Vec::new();
    while late.len() < 2 {
        release.notify_waiters();
        if let Ok(Some(done)) = tokio::time::timeout(Duration::from_millis(50), done_rx.recv()).await {
            late.push(done);
        }
    }
    assert!(late.iter().all(|(status, _, _)| *status == StatusCode::OK));
    assert_eq!(slow.connections(), 1, "never more than maxConnections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_endpoint_and_takes_it_back() {
    let good = Upstream::ok("good", false).await;
    let bad = Upstream::start("bad", false, Arc::new(|_, _| Box::pin(async { reply(500, "bad") }))).await;
    let mesh = Mesh::start().await;
    let mut both = cluster("pool", vec![good.endpoint(), bad.endpoint()], UpstreamProtocol::Http1);
    both.load_balancer = Some(ambit_common::api::v1::LoadBalancer {
        policy: Some(ambit_common::api::v1::load_balancer::Policy::Simple(
            ambit_common::api::v1::SimpleLoadBalancer::RoundRobin as i32,
        )),
    });
    both.outlier_detection = Some(OutlierDetection {
        consecutive_5xx_errors: 3,
        interval_ms: 50,
        base_ejection_time_ms: 300,
        max_ejection_percent: 100,
        ..Default::default()
    });
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("pool", vec![to("pool", 100)])]),
        cluster_resource(both),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    // Round robin: the bad endpoint gets every other request until its third 500 ejects it.
    for _ in 0..6 {
        read(send1(&mut client, get("/", &[])).await).await;
    }
    assert_eq!(bad.requests(), 3);
    let status = mesh.store.current().clusters[&cluster_name("pool")].status();
    assert!(status.endpoints[1].ejected && !status.endpoints[0].ejected, "{status:?}");
    for _ in 0..10 {
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good"), "the ejected endpoint is skipped");
    }
    assert_eq!(bad.requests(), 3);
    // The interval timer brings it back after the base ejection time.
    let mut waited = 0;
    while mesh.store.current().clusters[&cluster_name("pool")].status().endpoints[1].ejected && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    for _ in 0..4 {
        read(send1(&mut client, get("/", &[])).await).await;
    }
    assert!(bad.requests() > 3, "back in load balancing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_update_is_refused_and_the_last_good_one_keeps_serving() {
    let v1 = Upstream::ok("v1", false).await;
    let mesh = Mesh::start().await;
    let good = || {
        vec![
            table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
            cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        ]
    };
    mesh.apply(good()).unwrap();
    let bad_regex = HttpRoute {
        r#match: Some(ambit_common::api::v1::HttpMatch {
            uri: Some(ambit_common::api::v1::StringMatcher {
                kind: Some(ambit_common::api::v1::string_matcher::Kind::Regex("([".into())),
            }),
            ..Default::default()
        }),
        ..forward_route("broken", vec![to("v1", 100)])
    };
    let error = mesh
        .apply(vec![
            table(AppProtocol::Http, vec![bad_regex]),
            cluster_resource(cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1)),
        ])
        .unwrap_err();
    assert!(error.contains(HOST) && error.contains("broken") && error.contains("match.uri"), "{error}");
    let missing = mesh.apply(vec![table(AppProtocol::Http, vec![forward_route("default", vec![to("gone", 100)])])]);
    assert!(missing.unwrap_err().contains("gone"), "a route to a cluster that is not sent is refused");
    let version = mesh.store.current().version;
    assert_eq!(version, 1, "still the first update");
    let mut client = mesh.http1().await;
    let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_retried_on_another_endpoint() {
    let good = Upstream::ok("good", false).await;
    // Bound, then closed: connecting there is refused.
    let dead_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mut dead = good.endpoint();
    dead.port = u32::from(dead_port);
    let mesh = Mesh::start().await;
    let mut pool = cluster("pool", vec![dead, good.endpoint()], UpstreamProtocol::Http1);
    pool.load_balancer = Some(ambit_common::api::v1::LoadBalancer {
        policy: Some(ambit_common::api::v1::load_balancer::Policy::Simple(
            ambit_common::api::v1::SimpleLoadBalancer::RoundRobin as i32,
        )),
    });
    let retry = RetryPolicy {
        attempts: 1,
        retry_on: vec![RetryOn::ConnectFailure as i32],
        retry_other_endpoints: true,
        backoff_base_interval_ms: 1,
        ..Default::default()
    };
    let no_retry = HttpRoute {
        r#match: Some(ambit_common::api::v1::HttpMatch {
            headers: vec![ambit_common::api::v1::HeaderMatch { name: "x-no-retry".into(), value: None }],
            ..Default::default()
        }),
        ..forward_route("no-retry", vec![to("pool", 100)])
    };
    let retried =
        with_forward("retried", Forward { clusters: vec![to("pool", 100)], retry: Some(retry), ..Default::default() });
    mesh.apply(vec![table(AppProtocol::Http, vec![no_retry, retried]), cluster_resource(pool)]).unwrap();
    let mut client = mesh.http1().await;
    for _ in 0..4 {
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good"));
    }
    let attempts: Vec<u32> = mesh.records().await.iter().map(|r| r.attempts).collect();
    assert!(attempts.contains(&2), "a try to the dead endpoint was retried on the good one: {attempts:?}");
    // Without a retry policy the dead endpoint's refusal is the answer: 503 UF.
    let mut flags = Vec::new();
    for _ in 0..2 {
        let (status, _, body) = read(send1(&mut client, get("/", &[("x-no-retry", "1")])).await).await;
        let record = mesh.last_record().await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body.contains("remote connection failure"), "{body}");
            flags.push(record.response_flags);
        }
    }
    assert_eq!(flags, ["UF"], "round robin sends one of two requests to the dead endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_per_connection_retires_connections() {
    let v1 = Upstream::ok("v1", false).await;
    let mesh = Mesh::start().await;
    let mut once = cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1);
    once.connection_pool = Some(ConnectionPool { max_requests_per_connection: 1, ..Default::default() });
    mesh.apply(vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(once),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    for _ in 0..3 {
        let (status, _, _) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!((v1.requests(), v1.connections()), (3, 3), "one request per connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_trailers_only_replies_and_grpc_retries() {
    // Answers UNAVAILABLE (trailers-only) once, then OK.
    let grpc = Upstream::start(
        "grpc",
        true,
        Arc::new(|n, _| {
            Box::pin(async move {
                let status = if n == 0 { "14" } else { "0" };
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", status)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap()
            })
        }),
    )
    .await;
    let mesh = Mesh::start().await;
    let retry = RetryPolicy {
        attempts: 2,
        retry_on: vec![RetryOn::Unavailable as i32],
        backoff_base_interval_ms: 1,
        ..Default::default()
    };
    let aborted = HttpRoute {
        r#match: Some(ambit_common::api::v1::HttpMatch {
            headers: vec![ambit_common::api::v1::HeaderMatch { name: "x-abort".into(), value: None }],
            ..Default::default()
        }),
        fault: Some(Fault {
            delay: None,
            abort: Some(FaultAbort { status: Some(fault_abort::Status::GrpcStatus(8)), per_million: 1_000_000 }),
        }),
        ..forward_route("aborted", vec![to("grpc", 100)])
    };
    let retried =
        with_forward("grpc", Forward { clusters: vec![to("grpc", 100)], retry: Some(retry), ..Default::default() });
    mesh.apply(vec![
        table(AppProtocol::Grpc, vec![aborted, retried]),
        cluster_resource(cluster("grpc", vec![grpc.endpoint()], UpstreamProtocol::Http2)),
    ])
    .unwrap();
    let mut client = mesh.http2().await;
    let call = |abort: bool| {
        let mut builder = http::Request::post(format!("http://{HOST}:{PORT}/pkg.Svc/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if abort {
            builder = builder.header("x-abort", "1");
        }
        builder.body(http_body_util::Full::new(bytes::Bytes::from_static(b"\0\0\0\0\0"))).unwrap()
    };
    let (status, headers, _) = read(client.send_request(call(false)).await.unwrap()).await;
    assert_eq!((status, &headers["grpc-status"]), (StatusCode::OK, &http::HeaderValue::from(0)));
    assert_eq!(grpc.requests(), 2, "UNAVAILABLE was retried");
    assert_eq!(mesh.last_record().await.attempts, 2);
    let (status, headers, _) = read(client.send_request(call(true)).await.unwrap()).await;
    assert_eq!((status, &headers["grpc-status"]), (StatusCode::OK, &http::HeaderValue::from(8)));
    let record = mesh.last_record().await;
    assert_eq!((record.response_flags.as_str(), record.grpc_status), ("FI", Some(8)));
}

type Frames = tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;

/// A body streamed from `frames`.
fn streamed(
    frames: Frames,
) -> http_body_util::StreamBody<
    tokio_stream::wrappers::ReceiverStream<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>,
> {
    http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_starts_once_the_request_is_complete() {
    // An upload that takes longer than the route timeout and the per-try timeout is not cut off:
    // Envoy starts both when the client's request is complete.
    let upstream = Upstream::ok("v1", false).await;
    let mesh = Mesh::start().await;
    let retry = RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 1_000,
        retry_on: vec![RetryOn::RetryOn5xx as i32],
        ..Default::default()
    };
    let forward =
        Forward { clusters: vec![to("v1", 100)], timeout_ms: 1_000, retry: Some(retry), ..Default::default() };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![with_forward("slow-upload", forward)]),
        cluster_resource(cluster("v1", vec![upstream.endpoint()], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let io = hyper_util::rt::TokioIo::new(mesh.tunnel(vip()).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let (frames, body) = tokio::sync::mpsc::channel(1);
    let request = http::Request::post("/upload").header("host", HOST).body(streamed(body)).unwrap();
    let feeder = tokio::spawn(async move {
        // Six chunks 300 ms apart: 1.8 s of upload.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            frames.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"chunk")))).await.unwrap();
        }
    });
    let response = sender.send_request(request).await.unwrap();
    feeder.await.unwrap();
    let (status, _, body) = read(response).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"), "the upload outlasting the timeout succeeds");
    assert_eq!(mesh.last_record().await.response_flags, "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_bounds_the_response_body_and_resets_it_ut() {
    // The upstream answers at once, then trickles its body (a chunk every 100 ms, 10 s at most):
    // the route timeout of 1 s cuts the response short.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (delivered_tx, mut delivered) = tokio::sync::mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |_request: http::Request<hyper::body::Incoming>| {
            let delivered = delivered_tx.clone();
            async move {
                let (frames, body) = tokio::sync::mpsc::channel(1);
                tokio::spawn(async move {
                    let mut sent = 0;
                    for _ in 0..100 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if frames.send(Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"tick")))).await.is_err()
                        {
                            break;
                        }
                        sent += 1;
                    }
                    let _ = delivered.send(sent);
                });
                Ok::<_, std::convert::Infallible>(http::Response::new(streamed(body)))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
            .await;
    });
    let endpoint = loopback_endpoint("trickle", port);
    let mesh = Mesh::start().await;
    let forward = Forward { clusters: vec![to("trickle", 100)], timeout_ms: 1_000, ..Default::default() };
    mesh.apply(vec![
        table(AppProtocol::Http, vec![with_forward("trickle", forward)]),
        cluster_resource(cluster("trickle", vec![endpoint], UpstreamProtocol::Http1)),
    ])
    .unwrap();
    let mut client = mesh.http1().await;
    let response = send1(&mut client, get("/stream", &[])).await;
    assert_eq!(response.status(), StatusCode::OK, "the headers came in time");
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "the body is cut short, not ended cleanly");
    let record = mesh.last_record().await;
    assert_eq!((record.response_code, record.response_flags.as_str()), (200, "UT"), "{record:?}");
    let sent = delivered.recv().await.unwrap();
    assert!(sent < 100, "the upstream's stream was closed too ({sent} chunks sent)");
}
