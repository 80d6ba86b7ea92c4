//! The waypoint's real data path on loopback: a test CA, the waypoint's HBONE listener, an HBONE
//! client with a mesh certificate, hyper upstream servers (plaintext, and one behind a small
//! HBONE server), and configurations built as the control plane would send them.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ambit_common::{
    api::v1::{
        AppProtocol, Cluster, EndpointTransport, Forward, HttpRoute, LbEndpoint, PortRoutes, Resource, RouteTable,
        Update, UpstreamProtocol, WeightedCluster, http_route, resource::Kind,
    },
    discovery::ResourceSet,
    hbone::{self, client::Pool},
    identity::{SpiffeId, WorkloadCert, peer_identity, testing::TestCa, tls},
    relay::relay,
};
use ambit_waypoint::{
    identity::Identity,
    proxy::{Waypoint, inbound},
    records::AccessRecord,
    snapshot::ConfigStore,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub(crate) const TD: &str = "cluster.local";
/// The service VIP clients tunnel to (never connected to: it only selects the route table).
pub(crate) const VIP: [u8; 4] = [10, 96, 0, 10];
pub(crate) const PORT: u16 = 80;
pub(crate) const HOST: &str = "reviews.bookinfo.svc.cluster.local";

pub(crate) fn vip() -> SocketAddr {
    SocketAddr::from((VIP, PORT))
}

pub(crate) fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

pub(crate) struct Mesh {
    pub(crate) ca: Arc<TestCa>,
    pub(crate) waypoint: Arc<Waypoint>,
    pub(crate) store: ConfigStore,
    pub(crate) addr: SocketAddr,
    client: Pool<u8>,
    client_cert: WorkloadCert,
    version: AtomicUsize,
}

impl Mesh {
    /// A waypoint on 127.0.0.1 with a certificate from `ca`, its endpoints' HBONE port
    /// `hbone_port`.
    pub(crate) async fn start_on(ca: TestCa, hbone_port: u16) -> Self {
        Self::start_with(ca, hbone_port, Some(ambit_waypoint::proxy::DEFAULT_STREAM_IDLE_TIMEOUT)).await
    }

    /// [`Mesh::start_on`] with the waypoint's stream idle timeout.
    pub(crate) async fn start_with(ca: TestCa, hbone_port: u16, stream_idle_timeout: Option<Duration>) -> Self {
        let cert = ca.issue(&id("bookinfo", "waypoint"), Duration::from_secs(3600));
        let identity = Identity::fixed(cert, ca.bundle());
        let waypoint = Waypoint::new(ConfigStore::default(), identity, hbone_port, stream_idle_timeout);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(inbound::serve(listener, waypoint.clone()));
        Self::attach(Arc::new(ca), waypoint, addr)
    }

    /// A client of a waypoint already serving on `addr`, with a certificate from `ca`.
    pub(crate) fn attach(ca: Arc<TestCa>, waypoint: Arc<Waypoint>, addr: SocketAddr) -> Self {
        let store = waypoint.config.clone();
        let client_cert = ca.issue(&id("client", "sleep"), Duration::from_secs(3600));
        Self {
            ca,
            waypoint,
            store,
            addr,
            client: Pool::new(hbone::Settings::default()),
            client_cert,
            version: AtomicUsize::new(0),
        }
    }

    pub(crate) async fn start() -> Self {
        Self::start_on(TestCa::new(TD), 15008).await
    }

    /// Applies `resources` as a full update.
    pub(crate) fn apply(&self, resources: Vec<Resource>) -> Result<(), String> {
        let version = self.version.fetch_add(1, Ordering::Relaxed) as u64 + 1;
        let set = ResourceSet::default()
            .apply(Update { version, full: true, upserts: resources, ..Default::default() })
            .map_err(|e| e.to_string())?;
        self.store.apply(&set).map_err(|e| e.to_string())
    }

    /// A CONNECT tunnel to `authority` through the waypoint, as the client workload.
    pub(crate) async fn tunnel(
        &self,
        authority: SocketAddr,
    ) -> Result<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static, hbone::HboneError> {
        Ok(ambit_waypoint::io::joined(self.tunnel_stream(authority).await?))
    }

    /// The tunnel as an HBONE stream, whose write half can reset it.
    pub(crate) async fn tunnel_stream(&self, authority: SocketAddr) -> Result<hbone::H2Stream, hbone::HboneError> {
        let config = tls::hbone_client_config(&self.client_cert, &self.ca.bundle(), &id("bookinfo", "waypoint"));
        let addr = self.addr;
        let connect = move || async move {
            let tcp = TcpStream::connect(addr).await?;
            TlsConnector::from(config).connect(ServerName::IpAddress(addr.ip().into()), tcp).await
        };
        self.client.open(&0, authority, connect).await
    }

    /// An HTTP/1.1 client over a tunnel to the service.
    pub(crate) async fn http1(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        self.http1_to(vip()).await
    }

    /// An HTTP/1.1 client over a tunnel to `authority`.
    pub(crate) async fn http1_to(&self, authority: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let io = self.tunnel(authority).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
        tokio::spawn(conn);
        sender
    }

    /// An HTTP/2 client over a tunnel to the service.
    pub(crate) async fn http2(&self) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        self.http2_to(vip()).await
    }

    /// An HTTP/2 client over a tunnel to `authority`.
    pub(crate) async fn http2_to(&self, authority: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let io = self.tunnel(authority).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    /// The access records of every request answered so far. A record is stored when its response
    /// body ends, which may be just after the client has read that body, so this waits (up to
    /// 10 s) until every request the waypoint has answered has its record.
    pub(crate) async fn records(&self) -> Vec<AccessRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.waypoint.records.after(0);
            let answered = self.waypoint.stats.requests.load(Ordering::Relaxed);
            if records.last().map_or(0, |r| r.id) >= answered {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{answered} requests answered, records stored: {records:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The records of the first `count` TCP connections, waiting (up to 10 s) for them: a
    /// connection is recorded when its relay ends.
    pub(crate) async fn connection_records(&self, count: usize) -> Vec<ambit_waypoint::records::ConnectionRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.waypoint.records.connections_after(0);
            if records.len() >= count {
                return records;
            }
            assert!(tokio::time::Instant::now() < deadline, "{count} connection records expected: {records:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The record of the request answered last.
    pub(crate) async fn last_record(&self) -> AccessRecord {
        self.records().await.pop().expect("a request was recorded")
    }
}

/// Sends `request` once the connection is ready for it (an HTTP/1.1 connection takes one
/// request at a time).
pub(crate) async fn send1(
    client: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Response<Incoming> {
    client.ready().await.unwrap();
    client.send_request(request).await.unwrap()
}

/// A GET for `path` with `headers`.
pub(crate) fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(path).header("host", format!("{HOST}:{PORT}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// The same for HTTP/2 (absolute URI).
pub(crate) fn get2(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(format!("http://{HOST}:{PORT}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// Status, headers and body text of a response.
pub(crate) async fn read(response: Response<Incoming>) -> (StatusCode, http::HeaderMap, String) {
    let (head, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (head.status, head.headers, String::from_utf8_lossy(&bytes).into_owned())
}

type Handler = Arc<
    dyn Fn(usize, http::request::Parts) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync,
>;

/// What an upstream saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) authority: String,
    pub(crate) path: String,
}

/// A hyper server on 127.0.0.1 that counts connections and requests and answers with `handler`
/// (given the request's number, from 0); every response says which upstream answered
/// (`x-upstream`).
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) name: &'static str,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub(crate) async fn start(name: &'static str, http2: bool, handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, r, s) = (connections.clone(), requests.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                c.fetch_add(1, Ordering::Relaxed);
                let (r, s, handler) = (r.clone(), s.clone(), handler.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let n = r.fetch_add(1, Ordering::Relaxed);
                    let (parts, body) = request.into_parts();
                    let authority = parts
                        .uri
                        .authority()
                        .map(|a| a.to_string())
                        .or_else(|| parts.headers.get("host").map(|h| h.to_str().unwrap().to_owned()))
                        .unwrap_or_default();
                    s.lock().unwrap().push(Seen {
                        authority,
                        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                    });
                    let handler = handler.clone();
                    async move {
                        let _ = body.collect().await;
                        let mut response = handler(n, parts).await;
                        response.headers_mut().insert("x-upstream", name.parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let io = TokioIo::new(tcp);
                    if http2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    }
                });
            }
        });
        Self { addr, name, connections, requests, seen }
    }

    /// Answers every request 200 with its name.
    pub(crate) async fn ok(name: &'static str, http2: bool) -> Self {
        Self::start(name, http2, Arc::new(move |_, _| Box::pin(async move { reply(200, name) }))).await
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A plaintext endpoint for this server.
    pub(crate) fn endpoint(&self) -> LbEndpoint {
        loopback_endpoint(self.name, self.addr.port())
    }
}

/// A plaintext endpoint on 127.0.0.1 at `port` (for a server a test runs itself).
pub(crate) fn loopback_endpoint(name: &str, port: u16) -> LbEndpoint {
    LbEndpoint {
        workload_uid: name.into(),
        address: vec![127, 0, 0, 1],
        port: u32::from(port),
        transport: EndpointTransport::Plaintext as i32,
        ..Default::default()
    }
}

pub(crate) fn reply(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

/// An HBONE server for endpoints on 127.0.0.1: mutual TLS as `identity`, then each CONNECT
/// relayed to `127.0.0.1:<the authority's port>`. Records the client identities it saw.
pub(crate) struct HboneEndpoint {
    pub(crate) port: u16,
    pub(crate) clients: Arc<Mutex<Vec<SpiffeId>>>,
}

impl HboneEndpoint {
    pub(crate) async fn start(ca: &TestCa, identity: &SpiffeId) -> Self {
        let cert = ca.issue(identity, Duration::from_secs(3600));
        let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(cert.certified_key()));
        let config = tls::hbone_server_config(resolver, &ca.bundle());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let clients = Arc::new(Mutex::new(Vec::new()));
        let seen = clients.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, seen) = (TlsAcceptor::from(config.clone()), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    if let Some(Ok(peer)) = tls.get_ref().1.peer_certificates().map(peer_identity) {
                        seen.lock().unwrap().push(peer);
                    }
                    let _ = hbone::server::serve(tls, &hbone::Settings::default(), |request| async move {
                        let port: u16 = request.authority.rsplit(':').next().unwrap().parse().unwrap();
                        let Ok(app) = TcpStream::connect(("127.0.0.1", port)).await else {
                            return request.reject(StatusCode::SERVICE_UNAVAILABLE);
                        };
                        let Ok(tunnel) = request.accept() else { return };
                        relay(tunnel, app).await;
                    })
                    .await;
                });
            }
        });
        Self { port, clients }
    }
}

// ----- Resources, as the control plane sends them.

pub(crate) fn cluster_name(subset: &str) -> String {
    format!("{HOST}|{PORT}|{subset}")
}

pub(crate) fn cluster(subset: &str, endpoints: Vec<LbEndpoint>, protocol: UpstreamProtocol) -> Cluster {
    Cluster {
        hostname: HOST.into(),
        port: u32::from(PORT),
        subset: subset.into(),
        namespace: "bookinfo".into(),
        service_name: "reviews".into(),
        upstream_protocol: protocol as i32,
        endpoints,
        ..Default::default()
    }
}

pub(crate) fn cluster_resource(cluster: Cluster) -> Resource {
    Resource { name: cluster_name(&cluster.subset), kind: Some(Kind::Cluster(cluster)) }
}

pub(crate) fn to(subset: &str, weight: u32) -> WeightedCluster {
    WeightedCluster { cluster: cluster_name(subset), weight, ..Default::default() }
}

pub(crate) fn forward_route(name: &str, clusters: Vec<WeightedCluster>) -> HttpRoute {
    HttpRoute {
        name: name.into(),
        action: Some(http_route::Action::Forward(Forward { clusters, ..Default::default() })),
        ..Default::default()
    }
}

pub(crate) fn table(protocol: AppProtocol, http: Vec<HttpRoute>) -> Resource {
    table_with(PortRoutes { port: u32::from(PORT), name: "http".into(), protocol: protocol as i32, http, tcp: vec![] })
}

pub(crate) fn table_with(port: PortRoutes) -> Resource {
    Resource {
        name: HOST.into(),
        kind: Some(Kind::RouteTable(RouteTable {
            hostname: HOST.into(),
            namespace: "bookinfo".into(),
            name: "reviews".into(),
            virtual_service: "bookinfo/reviews".into(),
            ports: vec![port],
            vips: vec![VIP.to_vec()],
        })),
    }
}

/// Counts of `x-upstream` over responses.
pub(crate) fn tally(names: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts
}
