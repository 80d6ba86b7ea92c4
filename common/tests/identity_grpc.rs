//! gRPC over the TLS adapters: `tls_channel` (client) and `tls_incoming` (server) with the
//! generated Discovery service, proving they fit tonic.

use std::{net::SocketAddr, pin::Pin, time::Duration};

use ambit_common::{
    api::v1::{
        Hello, SubscribeRequest, Update,
        discovery_client::DiscoveryClient,
        discovery_server::{Discovery, DiscoveryServer},
        hello::Proxy,
        subscribe_request::Message,
    },
    identity::{SpiffeId, TrustBundle, grpc, testing::TestCa, tls},
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming, transport::Endpoint};

/// Answers a Hello with one full Update (version 7) and reports who connected, from where.
struct OneUpdate {
    seen: mpsc::UnboundedSender<(String, Option<SocketAddr>)>,
}

#[tonic::codegen::async_trait]
impl Discovery for OneUpdate {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let remote = request.remote_addr();
        let mut requests = request.into_inner();
        let Some(SubscribeRequest { message: Some(Message::Hello(hello)) }) = requests.message().await? else {
            return Err(Status::invalid_argument("say Hello first"));
        };
        let Some(Proxy::Node(node)) = hello.proxy else {
            return Err(Status::invalid_argument("not a node proxy"));
        };
        let _ = self.seen.send((node, remote));
        let update = Update { version: 7, full: true, ..Update::default() };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(update)]))))
    }
}

fn control_plane_id() -> SpiffeId {
    SpiffeId::new("cluster.local", "ambit-system", "ambit-control-plane").unwrap()
}

async fn subscribe(addr: SocketAddr, bundle: &TrustBundle, expected: &SpiffeId) -> Result<Update, String> {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(30)));
    let config = tls::control_plane_client_config(bundle, expected);
    let channel = grpc::tls_channel(endpoint, config).await.map_err(|e| e.to_string())?;
    let hello = Hello { proxy: Some(Proxy::Node("node-1".to_owned())), proxy_version: "test".to_owned() };
    let requests = tokio_stream::iter([SubscribeRequest { message: Some(Message::Hello(hello)) }]);
    let mut updates = DiscoveryClient::new(channel).subscribe(requests).await.map_err(|e| e.to_string())?.into_inner();
    updates.message().await.map_err(|e| e.to_string())?.ok_or_else(|| "no update".to_owned())
}

#[tokio::test]
async fn discovery_round_trip_over_tls_channel_and_tls_incoming() {
    let ca = TestCa::new("cluster.local");
    let bundle = ca.bundle();
    let server_config = tls::control_plane_server_config(&ca.issue(&control_plane_id(), Duration::from_secs(3600)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(tonic::transport::Server::builder().serve_with_incoming_shutdown(
        DiscoveryServer::new(OneUpdate { seen: seen_tx }),
        grpc::tls_incoming(listener, server_config),
        async {
            let _ = stopped.await;
        },
    ));

    // Connections that never complete a handshake neither end the stream nor hold up others.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let _silent = TcpStream::connect(addr).await.unwrap();
    drop(TcpStream::connect(addr).await.unwrap());

    let update = subscribe(addr, &bundle, &control_plane_id()).await.unwrap();
    assert_eq!((update.version, update.full), (7, true));
    let (node, remote) = seen.recv().await.unwrap();
    assert_eq!(node, "node-1");
    assert_eq!(remote.map(|r| r.ip()), Some(addr.ip()), "Request::remote_addr works");

    // A proxy expecting another identity refuses the server, and says why.
    let wrong = SpiffeId::new("cluster.local", "ambit-system", "impostor").unwrap();
    let e = subscribe(addr, &bundle, &wrong).await.unwrap_err();
    assert!(e.contains(&format!("server presented {}, expected {wrong}", control_plane_id())), "{e}");

    // A proxy that does not trust the root neither.
    let e = subscribe(addr, &TestCa::new("cluster.local").bundle(), &control_plane_id()).await.unwrap_err();
    assert!(e.contains("does not lead to a root"), "{e}");

    // And the server is still serving.
    assert_eq!(subscribe(addr, &bundle, &control_plane_id()).await.unwrap().version, 7);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_channel_reports_an_unreachable_endpoint() {
    // Bound then dropped: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let ca = TestCa::new("cluster.local");
    let e = subscribe(addr, &ca.bundle(), &control_plane_id()).await.unwrap_err();
    assert!(e.contains(&format!("could not connect to https://{addr}")), "{e}");
}
