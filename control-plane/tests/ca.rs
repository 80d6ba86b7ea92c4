//! The CA end to end: real gRPC over TLS on loopback (the control plane's router, serving both
//! Discovery and the CA with its own rotating certificate), node proxies authenticated by the
//! local node-credentials file (two nodes and the waypoint `shop/waypoint`), pods from a
//! configuration snapshot (`fixtures/ca/pods.yaml`: shop/cart on node-0, shop/web on node-1 and
//! node-2, the waypoint's pod running as shop/waypoint), compiled for Discovery.
//!
//! An issued chain is checked the way peers will use it: an in-memory mTLS handshake with
//! `ambit_common::identity`'s HBONE configurations, both sides verifying against the bundle the
//! CA returned and expecting exactly the requested SPIFFE id.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

use ambit_common::{
    api::v1::{SignRequest, SignResponse, certificate_authority_client::CertificateAuthorityClient},
    config::{ConfigStore, Snapshot, parse_documents},
    identity::{self, SpiffeId, TrustBundle, WorkloadCert},
};
use ambit_control_plane::{
    ca::{
        self, Ca,
        authn::Authenticator,
        credentials::NodeCredentials,
        root::{PemMaterial, RootCa, RootOrigin},
        service::CaService,
        serving::{self, RotatingCert},
        settings::{CaConfig, CallerAuth, RootSource},
        store::PlugInFiles,
    },
    compile::{MeshConfig, compile},
    grpc::{self, Router, Transport},
    metrics::Metrics,
    push::{DiscoveryService, Subscriptions, state::PushState},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;
use tonic::{Code, Status, transport::Channel};

const TD: &str = "cluster.local";
const NODE_0: &str = "token-of-node-0-0123456789abcdef";
const NODE_1: &str = "token-of-node-1-0123456789abcdef";
const WAYPOINT: &str = "token-of-waypoint-shop-waypoint-0123";
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ambit-ca-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pods() -> Snapshot {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca/pods.yaml");
    let outcome = parse_documents(&std::fs::read_to_string(path).unwrap(), path);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    ConfigStore::new().apply(outcome)
}

fn id(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::new(TD, ns, sa).unwrap()
}

/// A control plane's gRPC port with only what the CA needs behind it.
struct ControlPlane {
    addr: SocketAddr,
    ca: Arc<Ca>,
    serving: Arc<RotatingCert>,
    bundle: TrustBundle,
    _stop: oneshot::Sender<()>,
    _dir: TempDir,
}

impl ControlPlane {
    async fn start(root: RootCa, lifetime: Duration) -> Self {
        let dir = TempDir::new("credentials");
        let credentials = dir.path().join("nodes.yaml");
        let entries = format!("node-0: {NODE_0}\nnode-1: {NODE_1}\nwaypoint/shop/waypoint: {WAYPOINT}\n");
        std::fs::write(&credentials, entries).unwrap();
        let authenticator = Authenticator::NodeTokens(NodeCredentials::load(&credentials).unwrap());
        let snapshot = pods();
        let first = compile(&snapshot, &MeshConfig::default());
        let bundle = root.bundle().clone();
        let ca = Arc::new(Ca::new(root, TD.into(), lifetime, authenticator, Arc::new(move || snapshot.clone())));
        let serving = serving::start(ca.clone(), control_plane_id()).unwrap();

        let metrics = Arc::new(Metrics::default());
        let (_config, state) = watch::channel(Arc::new(PushState::new(&first, None)));
        let subscriptions = Subscriptions::new(state, metrics).authenticated_by(ca.clone());
        let discovery = DiscoveryService::new(Arc::new(subscriptions));
        let router = Router::new(discovery, Some(CaService::new(ca.clone())));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let transport = Transport::Tls { listener, config: serving.config.clone() };
        tokio::spawn(async move {
            let _ = grpc::serve(router, transport, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self { addr, ca, serving: serving.cert, bundle, _stop: stop, _dir: dir }
    }

    async fn generated(dir: &Path, lifetime: Duration) -> Self {
        Self::start(ca::store::load_or_create(dir, None, TD).unwrap(), lifetime).await
    }

    async fn client(&self) -> CertificateAuthorityClient<Channel> {
        let config = identity::tls::control_plane_client_config(&self.bundle, &control_plane_id());
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", self.addr)).unwrap();
        CertificateAuthorityClient::new(identity::grpc::tls_channel(endpoint, config).await.unwrap())
    }

    /// Asks for `identity` with a CSR for it; returns the response and the key.
    async fn sign(&self, token: &str, identity: &str, lifetime_seconds: u64) -> Result<(SignResponse, String), Status> {
        let asked: SpiffeId = identity.parse().unwrap_or_else(|_| id("shop", "cart"));
        let (csr, key) = identity::generate_csr(&asked).unwrap();
        let response = self.sign_csr(token, identity, &csr, lifetime_seconds).await?;
        Ok((response, key))
    }

    async fn sign_csr(
        &self,
        token: &str,
        identity: &str,
        csr: &str,
        lifetime_seconds: u64,
    ) -> Result<SignResponse, Status> {
        let mut request =
            tonic::Request::new(SignRequest { csr_pem: csr.into(), identity: identity.into(), lifetime_seconds });
        if !token.is_empty() {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        self.client().await.sign(request).await.map(tonic::Response::into_inner)
    }
}

fn control_plane_id() -> SpiffeId {
    serving::control_plane_identity(TD, "istio-system").unwrap()
}

fn workload_cert(response: &SignResponse, key: &str) -> WorkloadCert {
    WorkloadCert::from_pem(&response.cert_chain_pem.concat(), key)
        .expect("the chain and key form a workload certificate")
}

/// Both sides of an HBONE handshake present `cert` and verify the other against `bundle`,
/// expecting `cert`'s identity: the chain verifies for server and client use.
async fn handshake(cert: &WorkloadCert, bundle: &TrustBundle) -> Result<(), std::io::Error> {
    use rustls::sign::SingleCertAndKey;
    let server = identity::tls::hbone_server_config(Arc::new(SingleCertAndKey::from(cert.certified_key())), bundle);
    let client = identity::tls::hbone_client_config(cert, bundle, cert.identity());
    let (a, b) = tokio::io::duplex(64 * 1024);
    let accept = tokio_rustls::TlsAcceptor::from(server).accept(a);
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let connect = tokio_rustls::TlsConnector::from(client).connect(name, b);
    let (accepted, connected) = tokio::join!(accept, connect);
    accepted?;
    connected?;
    Ok(())
}

fn lifetime_of(cert: &WorkloadCert) -> Duration {
    cert.not_after().duration_since(SystemTime::now()).unwrap_or_default()
}

#[tokio::test]
async fn a_node_gets_the_identity_of_a_pod_on_its_node() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let (response, key) = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap();
    assert_eq!(response.cert_chain_pem.len(), 1, "a generated root has no intermediates");
    let bundle = TrustBundle::from_pem(&response.trust_bundle_pem).unwrap();
    assert_eq!(bundle.trust_domain(), Some(TD));
    let cert = workload_cert(&response, &key);
    assert_eq!(cert.identity(), &id("shop", "cart"));
    handshake(&cert, &bundle).await.expect("the chain verifies against the bundle");
    let stranger = identity::testing::TestCa::new(TD).bundle();
    handshake(&cert, &stranger).await.expect_err("another root's bundle does not verify it");
    let lifetime = lifetime_of(&cert);
    assert!(DAY - lifetime < Duration::from_secs(10), "the configured lifetime: {lifetime:?}");
    assert!(cert.not_before() < SystemTime::now() - Duration::from_secs(50), "backdated for clock skew");
    assert_eq!(cp.ca.stats.issued_count(), 1);
    let last = cp.ca.stats.last_issuance().unwrap();
    assert_eq!((last.requester.as_str(), last.identity.as_str()), ("node-0", "spiffe://cluster.local/ns/shop/sa/cart"));
}

#[tokio::test]
async fn a_pod_on_another_node_is_refused_naming_the_nodes() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let status = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/web", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "node node-0 asked for spiffe://cluster.local/ns/shop/sa/web, but no pod with that service account \
         runs on node-0; pods with it run on node-1, node-2"
    );
    let status = cp.sign(NODE_1, "spiffe://cluster.local/ns/shop/sa/nobody", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("no pod in namespace shop has service account nobody"), "{}", status.message());
    let mut metrics = String::new();
    cp.ca.render_metrics(&mut metrics);
    assert!(metrics.contains("ambit_cp_cert_refusals_total{reason=\"not_on_node\"} 2"), "{metrics}");
    assert!(metrics.contains("ambit_cp_certs_issued_total 0"), "{metrics}");
}

#[tokio::test]
async fn unknown_or_missing_tokens_are_unauthenticated() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let status = cp.sign("not-a-node-token", "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("the token matches no node"), "{}", status.message());
    let status = cp.sign("", "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("authorization: Bearer <token>"), "{}", status.message());
}

#[tokio::test]
async fn another_trust_domain_or_a_malformed_identity_is_refused() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let status = cp.sign(NODE_0, "spiffe://evil.example/ns/shop/sa/cart", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("this CA signs only for \"cluster.local\""), "{}", status.message());
    let status = cp.sign(NODE_0, "spiffe://cluster.local/shop/cart", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_csr_whose_signature_does_not_verify_is_refused() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let (csr, _) = identity::generate_csr(&id("shop", "cart")).unwrap();
    // One base64 character in the middle of the body flipped: the self-signature breaks.
    let mut bytes = csr.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let status = cp.sign_csr(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", &tampered, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("signature does not verify"), "{}", status.message());
    let status = cp.sign_csr(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", "junk", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_csrs_own_sans_are_ignored() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    // The CSR asks for web (on node-1); node-0 may only have cart: the certificate says cart.
    let (csr, key) = identity::generate_csr(&id("shop", "web")).unwrap();
    let response = cp.sign_csr(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", &csr, 0).await.unwrap();
    let cert = workload_cert(&response, &key);
    assert_eq!(cert.identity(), &id("shop", "cart"), "exactly one SPIFFE SAN, the authorized one");
}

#[tokio::test]
async fn the_lifetime_is_capped_and_short_lifetimes_are_honoured() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), Duration::from_secs(3600)).await;
    let (response, key) = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 48 * 3600).await.unwrap();
    let capped = lifetime_of(&workload_cert(&response, &key));
    assert!(capped <= Duration::from_secs(3600) && capped > Duration::from_secs(3590), "capped: {capped:?}");
    let (response, key) = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 1).await.unwrap();
    let cert = workload_cert(&response, &key);
    assert!(lifetime_of(&cert) <= Duration::from_secs(1), "one second asked: {:?}", lifetime_of(&cert));
    assert!(cert.refresh_at() > cert.not_before(), "the half-life is after notBefore");

    // A CA configured for 1 s (rotation tests): its certificates live 1 s, renewal is still ahead.
    let dir = TempDir::new("root-1s");
    let cp = ControlPlane::generated(dir.path(), Duration::from_secs(1)).await;
    let (response, key) = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap();
    let cert = workload_cert(&response, &key);
    let validity = cert.not_after().duration_since(cert.not_before()).unwrap();
    assert!(validity <= Duration::from_secs(2), "backdating is bounded by the lifetime: {validity:?}");
}

#[tokio::test]
async fn the_root_is_generated_once_and_reused_across_restarts() {
    let dir = TempDir::new("root");
    let first = ControlPlane::generated(dir.path(), DAY).await;
    let fingerprint = first.ca.root().info().root_fingerprint.clone();
    let (response, key) = first.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap();
    let issued_before = workload_cert(&response, &key);
    drop(first);

    let second = ControlPlane::generated(dir.path(), DAY).await;
    assert_eq!(second.ca.root().info().root_fingerprint, fingerprint);
    assert!(matches!(second.ca.root().info().origin, RootOrigin::Persisted { .. }));
    // A proxy's certificate from before the restart still verifies against the new bundle.
    handshake(&issued_before, &second.bundle).await.expect("same root");
    let on_disk = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert_eq!(TrustBundle::from_pem(&on_disk).unwrap().roots(), second.bundle.roots(), "ca.crt is the bundle");
}

/// Subscribes to Discovery as `proxy` with `token` (if any); the first update or the refusal.
async fn subscribe(
    channel: Channel,
    proxy: ambit_common::api::v1::hello::Proxy,
    token: Option<&str>,
) -> Result<ambit_common::api::v1::Update, Status> {
    use ambit_common::api::v1::{
        Hello, SubscribeRequest, discovery_client::DiscoveryClient, subscribe_request::Message,
    };
    let hello = Hello { proxy: Some(proxy), proxy_version: "test".into() };
    let requests =
        tokio_stream::iter([SubscribeRequest { message: Some(Message::Hello(hello)) }]).chain(tokio_stream::pending());
    let mut request = tonic::Request::new(requests);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let mut updates = DiscoveryClient::new(channel).subscribe(request).await?.into_inner();
    let update = tokio::time::timeout(Duration::from_secs(10), updates.message()).await.expect("an update in 10 s");
    Ok(update?.expect("the stream stays open"))
}

async fn tls_channel(cp: &ControlPlane) -> Channel {
    let config = identity::tls::control_plane_client_config(&cp.bundle, &control_plane_id());
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{}", cp.addr)).unwrap();
    identity::grpc::tls_channel(endpoint, config).await.unwrap()
}

#[tokio::test]
async fn discovery_and_the_ca_share_the_tls_port() {
    use ambit_common::api::v1::hello::Proxy;
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let channel = tls_channel(&cp).await;
    let update = subscribe(channel.clone(), Proxy::Node("node-0".into()), Some(NODE_0)).await.unwrap();
    assert_eq!(update.version, 1);
    // The same connection reaches the CA.
    let request = SignRequest { csr_pem: String::new(), identity: String::new(), lifetime_seconds: 0 };
    let status = CertificateAuthorityClient::new(channel).sign(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "the CA answered: {status:?}");
}

#[tokio::test]
async fn a_subscriber_must_prove_the_node_it_names() {
    use ambit_common::api::v1::hello::Proxy;
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let channel = tls_channel(&cp).await;
    let node = |name: &str| Proxy::Node(name.into());

    let refused = subscribe(channel.clone(), node("node-0"), None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("subscription as node node-0 refused"), "{refused:?}");

    let refused = subscribe(channel.clone(), node("node-0"), Some("not-a-token-anyone-was-given")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // node-1's genuine token does not make it node-0.
    let refused = subscribe(channel.clone(), node("node-0"), Some(NODE_1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("proves node node-1"), "{refused:?}");

    // A node's token does not make it a waypoint.
    let refused = subscribe(channel.clone(), waypoint("shop", "waypoint"), Some(NODE_0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("the credential proves node node-0, but the subscription names waypoint shop/waypoint"),
        "{refused:?}"
    );

    // Refusals leave nothing registered; the genuine subscriber gets its configuration.
    assert_eq!(subscribe(channel, node("node-1"), Some(NODE_1)).await.unwrap().version, 1);
}

fn waypoint(namespace: &str, name: &str) -> ambit_common::api::v1::hello::Proxy {
    use ambit_common::api::v1::{WaypointRef, hello::Proxy};
    Proxy::Waypoint(WaypointRef { namespace: namespace.into(), name: name.into() })
}

#[tokio::test]
async fn a_waypoint_subscribes_as_itself_only() {
    use ambit_common::api::v1::hello::Proxy;
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let channel = tls_channel(&cp).await;

    let update = subscribe(channel.clone(), waypoint("shop", "waypoint"), Some(WAYPOINT)).await.unwrap();
    assert!(update.full && update.version == 1, "its configuration, in full: {update:?}");

    for (asked, named) in [
        (waypoint("shop", "other"), "waypoint shop/other"),
        (waypoint("bank", "waypoint"), "waypoint bank/waypoint"),
        (Proxy::Node("node-2".into()), "node node-2"),
    ] {
        let refused = subscribe(channel.clone(), asked, Some(WAYPOINT)).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let expected = format!("the credential proves waypoint shop/waypoint, but the subscription names {named}");
        assert!(refused.message().starts_with(&expected), "{refused:?}");
    }
    let refused = subscribe(channel, waypoint("shop", "waypoint"), None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().starts_with("subscription as waypoint shop/waypoint refused: no credential"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_waypoint_gets_a_certificate_for_its_own_service_account_only() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), DAY).await;
    let (response, key) = cp.sign(WAYPOINT, "spiffe://cluster.local/ns/shop/sa/waypoint", 0).await.unwrap();
    let cert = workload_cert(&response, &key);
    assert_eq!(cert.identity(), &id("shop", "waypoint"));
    handshake(&cert, &TrustBundle::from_pem(&response.trust_bundle_pem).unwrap()).await.expect("it verifies");
    let last = cp.ca.stats.last_issuance().unwrap();
    assert_eq!(last.requester, "waypoint/shop/waypoint");

    // Not the workloads it serves, not even those on its own node (node-2 runs shop/web).
    for other in ["spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/cart"] {
        let status = cp.sign(WAYPOINT, other, 0).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            format!(
                "waypoint shop/waypoint asked for {other}, but a waypoint may have only its own service account's \
                 identity, spiffe://cluster.local/ns/shop/sa/waypoint"
            )
        );
    }
    // And a node may not have the waypoint's identity: no pod on node-0 runs as it.
    let status = cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/waypoint", 0).await.unwrap_err();
    assert!(status.message().contains("pods with it run on node-2"), "{}", status.message());
    let mut metrics = String::new();
    cp.ca.render_metrics(&mut metrics);
    assert!(metrics.contains("ambit_cp_cert_refusals_total{reason=\"not_own_identity\"} 2"), "{metrics}");
}

/// Istio's plug-in layout: a root, an intermediate signing leaves, `cert-chain.pem` = intermediate
/// + root (as Istio's `tools/certs` Makefile writes it).
fn plug_in_files(dir: &Path) -> PlugInFiles {
    let ca_params = |cn: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params("Example Root CA");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let intermediate_key = KeyPair::generate().unwrap();
    let intermediate = ca_params("Example Intermediate CA").signed_by(&intermediate_key, &root_issuer).unwrap();
    for (name, contents) in [
        ("ca-cert.pem", intermediate.pem()),
        ("ca-key.pem", intermediate_key.serialize_pem()),
        ("root-cert.pem", root.pem()),
        ("cert-chain.pem", format!("{}{}", intermediate.pem(), root.pem())),
    ] {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    PlugInFiles::new(dir.join("ca-cert.pem"), dir.join("ca-key.pem"), None, None)
}

#[tokio::test]
async fn a_plug_in_ca_with_an_intermediate_sends_the_intermediate_in_the_chain() {
    let plug_in = TempDir::new("plug-in");
    let files = plug_in_files(plug_in.path());
    assert!(files.root.is_some() && files.chain.is_some(), "root-cert.pem and cert-chain.pem found beside ca-cert.pem");
    let ca_dir = TempDir::new("ca-dir");
    let config = CaConfig {
        root: RootSource::Directory { dir: ca_dir.path().to_owned(), plug_in: Some(files) },
        callers: CallerAuth::None,
        cert_lifetime: DAY,
        bundle_file: Some(ca_dir.path().join("ca.crt")),
    };
    let root = ca::load_root(&config, TD, None).await.unwrap();
    assert!(matches!(root.info().origin, RootOrigin::PlugIn { .. }));
    let cp = ControlPlane::start(root, DAY).await;
    let (response, key) = cp.sign(NODE_1, "spiffe://cluster.local/ns/shop/sa/web", 0).await.unwrap();
    let intermediate = std::fs::read_to_string(plug_in.path().join("ca-cert.pem")).unwrap();
    assert_eq!(response.cert_chain_pem.len(), 2, "leaf + intermediate, no root: {:#?}", response.cert_chain_pem);
    assert_eq!(response.cert_chain_pem[1].trim(), intermediate.trim());
    let root_pem = std::fs::read_to_string(plug_in.path().join("root-cert.pem")).unwrap();
    assert_eq!(response.trust_bundle_pem.trim(), root_pem.trim());
    let bundle = TrustBundle::from_pem(&response.trust_bundle_pem).unwrap().with_trust_domain(TD).unwrap();
    handshake(&workload_cert(&response, &key), &bundle).await.expect("leaf → intermediate → root verifies");
    assert_eq!(std::fs::read_to_string(ca_dir.path().join("ca.crt")).unwrap().trim(), root_pem.trim());

    // The dir now holds only the bundle, not a root: a restart uses the plug-in again; a generated
    // root next to plug-in files is refused as ambiguous.
    let again = ca::load_root(&config, TD, None).await.unwrap();
    assert!(matches!(again.info().origin, RootOrigin::PlugIn { .. }));
    let generated = TempDir::new("generated");
    ca::store::load_or_create(generated.path(), None, TD).unwrap();
    let RootSource::Directory { plug_in, .. } = &config.root else { unreachable!() };
    let err = ca::store::load_or_create(generated.path(), plug_in.as_ref(), TD).err().unwrap().to_string();
    assert!(err.contains("to use the plug-in CA, remove"), "{err}");
}

#[tokio::test]
async fn a_leaf_certificate_as_plug_in_ca_is_refused_with_the_fix() {
    let ca = identity::testing::TestCa::new(TD);
    let leaf = ca.issue(&id("shop", "cart"), DAY);
    let (_, key) = identity::generate_csr(&id("shop", "cart")).unwrap();
    let material = PemMaterial { cert: leaf.chain_pem(), key, root: Some(ca.root_pem()), chain: None };
    let err = RootCa::from_pem(&material, RootOrigin::PlugIn { at: "/etc/cacerts/ca-cert.pem".into() }).err().unwrap();
    assert!(err.to_string().contains("not a CA (basicConstraints CA:TRUE missing)"), "{err}");
}

#[tokio::test]
async fn the_serving_certificate_is_the_control_planes_identity_and_rotates() {
    let dir = TempDir::new("root");
    let cp = ControlPlane::generated(dir.path(), Duration::from_secs(2)).await;
    let first = cp.serving.current();
    assert_eq!(first.identity(), &control_plane_id());
    // Clients verify the control plane as spiffe://cluster.local/ns/istio-system/sa/ambit-control-plane.
    cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 0).await.unwrap();

    // Rotation at half-life (~1 s here): wait (bounded) for the swap, then connect anew.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cp.serving.current().not_after() == first.not_after() {
        assert!(tokio::time::Instant::now() < deadline, "the serving certificate was not rotated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = cp.serving.current();
    assert!(rotated.not_after() > first.not_after());
    // After the first certificate expired, new connections still succeed: they get the new one.
    let wait = first.not_after().duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    cp.sign(NODE_0, "spiffe://cluster.local/ns/shop/sa/cart", 0)
        .await
        .expect("a new connection with a valid certificate");
}
