//! The waypoint as the binary starts it (`app::start`), against a fake control plane on one TLS
//! gRPC port: its certificate comes from the CA (with its token), its configuration from
//! Discovery (as a waypoint, ACKed), a bad update is NACKed while the last good one serves, and
//! the admin API reports it all.

use std::{
    convert::Infallible,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use ambit_common::{
    api::v1::{
        Ack, AppProtocol, ConnectionPool, HttpMatch, HttpRoute, SignRequest, SignResponse, StringMatcher,
        SubscribeRequest, Update, UpstreamProtocol,
        certificate_authority_server::{CertificateAuthority, CertificateAuthorityServer},
        discovery_server::{Discovery, DiscoveryServer},
        hello::Proxy,
        string_matcher, subscribe_request,
    },
    identity::{grpc, testing::TestCa, tls},
};
use ambit_waypoint::{app, config::Args};
use clap::Parser;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::mpsc};
use tonic::{
    Request, Response, Status, Streaming,
    codegen::{BoxFuture, Service, StdError, http as tonic_http},
};

use crate::harness::*;

const TOKEN: &str = "waypoint-token";

fn bearer<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
        Some(value) if value == format!("Bearer {TOKEN}") => Ok(()),
        other => Err(Status::unauthenticated(format!("bad token {other:?}"))),
    }
}

struct FakeCa(Arc<TestCa>);

#[tonic::codegen::async_trait]
impl CertificateAuthority for FakeCa {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        bearer(&request)?;
        let request = request.into_inner();
        assert_eq!(request.identity, "spiffe://cluster.local/ns/bookinfo/sa/waypoint");
        let chain = self
            .0
            .sign_csr(&request.csr_pem, Duration::from_secs(3600))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(SignResponse { cert_chain_pem: vec![chain], trust_bundle_pem: self.0.bundle().to_pem() }))
    }
}

/// Sends the updates it is given to the first waypoint that subscribes, and passes its ACKs on.
struct FakeDiscovery {
    updates: Mutex<Option<mpsc::UnboundedReceiver<Update>>>,
    acks: mpsc::UnboundedSender<Ack>,
}

#[tonic::codegen::async_trait]
impl Discovery for FakeDiscovery {
    type SubscribeStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Update, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        bearer(&request)?;
        let mut requests = request.into_inner();
        let Some(SubscribeRequest { message: Some(subscribe_request::Message::Hello(hello)) }) =
            requests.message().await?
        else {
            return Err(Status::invalid_argument("say Hello first"));
        };
        let Some(Proxy::Waypoint(waypoint)) = hello.proxy else {
            return Err(Status::invalid_argument("not a waypoint"));
        };
        assert_eq!((waypoint.namespace.as_str(), waypoint.name.as_str()), ("bookinfo", "waypoint"));
        let acks = self.acks.clone();
        tokio::spawn(async move {
            while let Ok(Some(SubscribeRequest { message: Some(subscribe_request::Message::Ack(ack)) })) =
                requests.message().await
            {
                let _ = acks.send(ack);
            }
        });
        let updates = self.updates.lock().unwrap().take().ok_or_else(|| Status::unavailable("one subscriber only"))?;
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(updates);
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(stream, Ok))))
    }
}

/// Discovery and the CA on one port, by path (tonic here has no router).
#[derive(Clone)]
struct Router {
    discovery: DiscoveryServer<FakeDiscovery>,
    ca: CertificateAuthorityServer<FakeCa>,
}

impl<B> Service<tonic_http::Request<B>> for Router
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = tonic_http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic_http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/ambit.v1.CertificateAuthority/") {
            self.ca.call(request)
        } else {
            self.discovery.call(request)
        }
    }
}

/// Files the waypoint reads, removed on drop.
struct Files(PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path).header("host", "admin").body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_gets_its_certificate_and_configuration_and_nacks_a_bad_update() {
    let ca = Arc::new(TestCa::new(TD));
    let files = Files(std::env::temp_dir().join(format!("ambit-waypoint-test-{}", std::process::id())));
    std::fs::create_dir_all(&files.0).unwrap();
    std::fs::write(files.0.join("ca.pem"), ca.root_pem()).unwrap();
    std::fs::write(files.0.join("token"), format!("{TOKEN}\n")).unwrap();

    let cp_cert = ca.issue(&id("istio-system", "ambit-control-plane"), Duration::from_secs(3600));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_addr = listener.local_addr().unwrap();
    let (updates, updates_rx) = mpsc::unbounded_channel();
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let router = Router {
        discovery: DiscoveryServer::new(FakeDiscovery { updates: Mutex::new(Some(updates_rx)), acks: acks_tx }),
        ca: CertificateAuthorityServer::new(FakeCa(ca.clone())),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .serve_with_incoming(router, grpc::tls_incoming(listener, tls::control_plane_server_config(&cp_cert))),
    );

    let args = Args::try_parse_from([
        "waypoint".to_owned(),
        format!("--control-plane=https://{cp_addr}"),
        format!("--ca-root={}", files.0.join("ca.pem").display()),
        format!("--token-file={}", files.0.join("token").display()),
        "--namespace=bookinfo".to_owned(),
        "--name=waypoint".to_owned(),
        "--service-account=waypoint".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--admin=127.0.0.1:0".to_owned(),
        "--workers=2".to_owned(),
    ])
    .unwrap();
    let running = app::start(args.into_config().unwrap()).await.unwrap();
    assert_eq!(admin_get(running.admin, "/ready").await.0, StatusCode::SERVICE_UNAVAILABLE, "no configuration yet");

    let v1 = Upstream::ok("v1", false).await;
    // maxConnections 1, shared by the two workers below.
    let mut v1_cluster = cluster("v1", vec![v1.endpoint()], UpstreamProtocol::Http1);
    v1_cluster.connection_pool =
        Some(ConnectionPool { max_connections: 1, http1_max_pending_requests: 8, ..Default::default() });
    let good = vec![
        table(AppProtocol::Http, vec![forward_route("default", vec![to("v1", 100)])]),
        cluster_resource(v1_cluster),
    ];
    updates.send(Update { version: 1, full: true, upserts: good, ..Default::default() }).unwrap();
    let ack = acks.recv().await.unwrap();
    assert_eq!((ack.version, ack.error.as_str()), (1, ""));
    let mut ready = admin_get(running.admin, "/ready").await.0;
    for _ in 0..500 {
        if ready == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        ready = admin_get(running.admin, "/ready").await.0;
    }
    assert_eq!(ready, StatusCode::OK, "configuration applied and certificate held");

    // Twenty-four clients, one HBONE connection each, one after the other: the kernel spreads the
    // connections over the two workers' listener sockets; each worker opens its own upstream
    // connection and keeps it for its next requests. The cluster allows one connection: the
    // worker that finds the other one holding it still opens its first (as Envoy's pools do)
    // rather than wait forever for a connection it cannot use.
    for _ in 0..24 {
        let mesh = Mesh::attach(ca.clone(), running.waypoint.clone(), running.listen);
        let mut client = mesh.http1().await;
        let (status, _, body) = read(send1(&mut client, get("/", &[])).await).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "v1"), "served with the CA's certificate");
    }
    let stats: serde_json::Value = serde_json::from_str(&admin_get(running.admin, "/stats").await.1).unwrap();
    let per_worker: Vec<u64> =
        stats["workerConnections"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 24, "{stats}");
    assert!(per_worker.len() == 2 && per_worker.iter().all(|&n| n > 0), "both workers accepted: {per_worker:?}");
    assert_eq!(v1.connections(), 2, "one upstream connection per worker, reused by its later requests");
    let dump: serde_json::Value = serde_json::from_str(&admin_get(running.admin, "/config_dump").await.1).unwrap();
    let breaker = &dump["snapshot"]["clusters"][0]["breaker"];
    assert_eq!(
        (breaker["connections"].as_u64(), breaker["connectionOverflows"].as_u64()),
        (Some(2), Some(1)),
        "{breaker}"
    );

    let mesh = Mesh::attach(ca, running.waypoint.clone(), running.listen);
    let mut client = mesh.http1().await;

    // A delta with a regex that does not compile: NACKed, naming the table and field.
    let bad = HttpRoute {
        r#match: Some(HttpMatch {
            uri: Some(StringMatcher { kind: Some(string_matcher::Kind::Regex("(".into())) }),
            ..Default::default()
        }),
        ..forward_route("broken", vec![to("v1", 100)])
    };
    updates
        .send(Update { version: 2, upserts: vec![table(AppProtocol::Http, vec![bad])], ..Default::default() })
        .unwrap();
    let nack = acks.recv().await.unwrap();
    assert_eq!(nack.version, 2);
    assert!(nack.error.contains(HOST) && nack.error.contains("match.uri"), "{}", nack.error);
    let (status, _, _) = read(send1(&mut client, get("/", &[])).await).await;
    assert_eq!(status, StatusCode::OK, "the last good configuration still serves");

    let (status, body) = admin_get(running.admin, "/requests?after=0").await;
    assert_eq!(status, StatusCode::OK);
    let records: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = &records[0];
    assert_eq!(first["routeName"], "default");
    assert_eq!(first["responseCode"], 200);
    assert_eq!(first["responseFlags"], "-");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["protocol"], "HTTP/1.1");
    assert_eq!(first["sourceIdentity"], "spiffe://cluster.local/ns/client/sa/sleep");
    assert_eq!(first["upstreamHost"], v1.addr.to_string());
    let after_first = admin_get(running.admin, &format!("/requests?after={}", first["id"])).await.1;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&after_first).unwrap().as_array().unwrap().len(), 24);

    let dump: serde_json::Value = serde_json::from_str(&admin_get(running.admin, "/config_dump").await.1).unwrap();
    assert_eq!(dump["subscription"]["nacksSent"], 1);
    assert_eq!(dump["snapshot"]["version"], 1);
    assert_eq!(dump["identity"]["held"], true);
    assert_eq!(dump["snapshot"]["clusters"][0]["endpoints"][0]["address"], v1.addr.to_string());
    let stats: serde_json::Value = serde_json::from_str(&admin_get(running.admin, "/stats").await.1).unwrap();
    assert_eq!(stats["requests"], 25);
}
