//! The CA's Kubernetes side against recorded API responses: node proxies authenticated with
//! TokenReview, and the root kept in Secrets.
//!
//! A real API server cannot run on this machine, so these tests drive a real `kube::Client`
//! over a `tower_test` mock service that answers like one: TokenReview creations with the
//! recorded responses in `fixtures/ca/tokenreview-*.json` (a token with the node-name extra
//! that Kubernetes ≥ 1.32 adds for pod-bound tokens; a pod-bound token without it; a rejected
//! token; a waypoint pod's token; a workload pod's token; another service account's token bound
//! to no pod), and Secret reads and creations from an in-memory store (404 and 409 `Status`
//! bodies as the API server sends them).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use ambit_common::{
    api::v1::SignRequest,
    config::{ConfigStore, Snapshot, parse_documents},
    identity::{self, SpiffeId, WorkloadCert},
};
use ambit_control_plane::{
    ca::{
        Ca,
        authn::{Authenticator, Claim},
        authz::Caller,
        kubernetes::TokenReviewer,
        root::{PemMaterial, RootCa, RootOrigin, generate_root},
        secret,
        service::Refusal,
    },
    push::{admission::admit, state::Scope},
};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::client::Body;
use tonic::{Code, metadata::MetadataMap};

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

const TOKENREVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const SECRETS: &str = "/api/v1/namespaces/istio-system/secrets";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/ca/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the mock API server holds and saw.
#[derive(Default)]
struct ApiServer {
    /// The TokenReview response to give.
    review: Option<&'static str>,
    /// Secrets in istio-system by name, as JSON.
    secrets: BTreeMap<String, Vec<u8>>,
    /// Stored just before the first Secret creation is handled: another replica won the race.
    race: Option<(String, Vec<u8>)>,
    /// (method, path, body) of every request.
    seen: Vec<(Method, String, serde_json::Value)>,
}

impl ApiServer {
    fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let json = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        self.seen.push((method.clone(), path.to_owned(), json.clone()));
        let not_found =
            |name: &str| String::from_utf8(fixture("status-404-secret.json")).unwrap().replace("NAME", name);
        match (method, path) {
            (&Method::POST, TOKENREVIEWS) => (StatusCode::CREATED, fixture(self.review.expect("a scripted review"))),
            (&Method::GET, path) if path.starts_with(SECRETS) => {
                let name = path.rsplit('/').next().unwrap_or_default();
                match self.secrets.get(name) {
                    Some(secret) => (StatusCode::OK, secret.clone()),
                    None => (StatusCode::NOT_FOUND, not_found(name).into_bytes()),
                }
            }
            (&Method::POST, SECRETS) => {
                if let Some((name, secret)) = self.race.take() {
                    self.secrets.insert(name, secret);
                }
                let name = json["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                if self.secrets.contains_key(&name) {
                    let conflict =
                        not_found(&name).replace("not found", "already exists").replace("NotFound", "AlreadyExists");
                    return (StatusCode::CONFLICT, conflict.replace("404", "409").into_bytes());
                }
                self.secrets.insert(name, body.to_vec());
                (StatusCode::CREATED, body.to_vec())
            }
            _ => panic!("unexpected request {method} {path}"),
        }
    }
}

/// A kube client whose requests `server` answers.
fn client(server: Arc<Mutex<ApiServer>>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.expect("a request body").to_bytes();
            let (status, reply) = server.lock().unwrap().answer(&parts.method, parts.uri.path(), &body);
            let response = Response::builder().status(status).header("content-type", "application/json");
            respond.send_response(response.body(Full::new(Bytes::from(reply)).boxed_unsync()).unwrap());
        }
    });
    kube::Client::new(service, "default")
}

fn pods() -> Snapshot {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca/pods.yaml");
    ConfigStore::new().apply(parse_documents(&std::fs::read_to_string(path).unwrap(), path))
}

fn generated_root() -> RootCa {
    let (cert, key) = generate_root("cluster.local").unwrap();
    RootCa::from_pem(&PemMaterial { cert, key, ..Default::default() }, RootOrigin::Generated { at: "test".into() })
        .unwrap()
}

/// A CA whose callers are reviewed by the mock API server answering with `review`.
fn ca_reviewing_with(review: &'static str) -> (Ca, Arc<Mutex<ApiServer>>) {
    let server = Arc::new(Mutex::new(ApiServer { review: Some(review), ..Default::default() }));
    let node_proxy = "istio-system/ambit-node-proxy".parse().unwrap();
    let reviewer = TokenReviewer::new(client(server.clone()), "ambit-ca".into(), node_proxy);
    let snapshot = pods();
    let ca = Ca::new(
        generated_root(),
        "cluster.local".into(),
        Duration::from_secs(3600),
        Authenticator::TokenReview(Box::new(reviewer)),
        Arc::new(move || snapshot.clone()),
    );
    (ca, server)
}

fn bearer() -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", "Bearer the-projected-token".parse().unwrap());
    metadata
}

async fn sign(ca: &Ca, identity: &str) -> Result<WorkloadCert, Refusal> {
    let metadata = bearer();
    let id: SpiffeId = identity.parse().unwrap();
    let (csr, key) = identity::generate_csr(&id).unwrap();
    let request = SignRequest { csr_pem: csr, identity: identity.into(), lifetime_seconds: 0 };
    let response = ca.sign(&metadata, &request).await?;
    Ok(WorkloadCert::from_pem(&response.cert_chain_pem.concat(), &key).unwrap())
}

#[tokio::test]
async fn a_token_naming_its_node_gets_that_nodes_pods_only() {
    let (ca, server) = ca_reviewing_with("tokenreview-node.json");
    let cert = sign(&ca, "spiffe://cluster.local/ns/shop/sa/web").await.unwrap();
    assert_eq!(cert.identity().as_str(), "spiffe://cluster.local/ns/shop/sa/web");

    let refusal = sign(&ca, "spiffe://cluster.local/ns/shop/sa/cart").await.err().unwrap();
    assert_eq!(refusal.classify().0, Code::PermissionDenied);
    assert_eq!(
        refusal.to_string(),
        "node node-1 asked for spiffe://cluster.local/ns/shop/sa/cart, but no pod with that service account runs \
         on node-1; pods with it run on node-0"
    );
    // The review asked about our token, for our audience.
    let seen = &server.lock().unwrap().seen;
    let (method, path, body) = &seen[0];
    assert_eq!((method, path.as_str()), (&Method::POST, TOKENREVIEWS));
    assert_eq!(body["spec"]["token"], "the-projected-token");
    assert_eq!(body["spec"]["audiences"], serde_json::json!(["ambit-ca"]));
}

#[tokio::test]
async fn a_pod_bound_token_without_the_node_extra_is_placed_by_its_pod() {
    let (ca, _) = ca_reviewing_with("tokenreview-pod-bound.json");
    let reviewer_claim = {
        let server =
            Arc::new(Mutex::new(ApiServer { review: Some("tokenreview-pod-bound.json"), ..Default::default() }));
        let reviewer =
            TokenReviewer::new(client(server), "ambit-ca".into(), "istio-system/ambit-node-proxy".parse().unwrap());
        reviewer.review("t").await.unwrap()
    };
    assert_eq!(
        reviewer_claim,
        Claim::BoundPod {
            namespace: "istio-system".into(),
            name: "ambit-node-proxy-x7k2p".into(),
            uid: Some("0a1b2c3d-0000-4000-8000-0000000000aa".into()),
        }
    );
    // The pod runs on node-1 in the configuration: node-1's pods are allowed.
    let cert = sign(&ca, "spiffe://cluster.local/ns/shop/sa/web").await.unwrap();
    assert_eq!(cert.identity().service_account(), "web");
    let refusal = sign(&ca, "spiffe://cluster.local/ns/shop/sa/cart").await.err().unwrap();
    assert!(refusal.to_string().starts_with("node node-1 asked for"), "{refusal}");
}

#[tokio::test]
async fn an_unauthenticated_token_is_refused_with_the_api_servers_reason() {
    let (ca, _) = ca_reviewing_with("tokenreview-unauthenticated.json");
    let refusal = sign(&ca, "spiffe://cluster.local/ns/shop/sa/web").await.err().unwrap();
    assert_eq!(refusal.classify().0, Code::Unauthenticated);
    assert_eq!(
        refusal.to_string(),
        "the token was not accepted by the Kubernetes API server: [invalid bearer token, service account token has expired]"
    );
}

#[tokio::test]
async fn another_service_accounts_token_is_refused() {
    // Bound to shop/cart's pod, which is no waypoint's.
    let (ca, _) = ca_reviewing_with("tokenreview-wrong-service-account.json");
    let refusal = sign(&ca, "spiffe://cluster.local/ns/shop/sa/cart").await.err().unwrap();
    assert_eq!(refusal.classify().0, Code::PermissionDenied);
    assert_eq!(
        refusal.to_string(),
        "the token of service account shop/cart is bound to pod shop/cart-7f9c5d-a1b2c, which is not a waypoint's: \
         it has no gateway.networking.k8s.io/gateway-name label; only the node proxy's service account and \
         waypoints may call the control plane"
    );
    // Bound to no pod: nothing could make it a waypoint.
    let (unbound, _) = ca_reviewing_with("tokenreview-unbound-service-account.json");
    let refusal = sign(&unbound, "spiffe://cluster.local/ns/shop/sa/cart").await.err().unwrap();
    assert_eq!(refusal.classify().0, Code::PermissionDenied);
    assert_eq!(
        refusal.to_string(),
        "the token belongs to system:serviceaccount:shop:cart, but only the node proxy's service account \
         istio-system/ambit-node-proxy and waypoints (with a pod-bound projected token) may call the control plane"
    );
    assert_eq!(ca.stats.issued_count() + unbound.stats.issued_count(), 0);
}

#[tokio::test]
async fn a_waypoint_pods_token_gets_its_own_service_account_only() {
    let (ca, _) = ca_reviewing_with("tokenreview-waypoint.json");
    let cert = sign(&ca, "spiffe://cluster.local/ns/shop/sa/waypoint").await.unwrap();
    assert_eq!(cert.identity().as_str(), "spiffe://cluster.local/ns/shop/sa/waypoint");
    assert_eq!(ca.stats.last_issuance().unwrap().requester, "waypoint/shop/waypoint");
    // Its token carries node-name node-2, where shop/web runs: a workload's token proves no node.
    let refusal = sign(&ca, "spiffe://cluster.local/ns/shop/sa/web").await.err().unwrap();
    assert_eq!(refusal.classify().0, Code::PermissionDenied);
    assert_eq!(
        refusal.to_string(),
        "waypoint shop/waypoint asked for spiffe://cluster.local/ns/shop/sa/web, but a waypoint may have only its \
         own service account's identity, spiffe://cluster.local/ns/shop/sa/waypoint"
    );
}

#[tokio::test]
async fn discovery_admits_a_waypoint_pod_as_its_waypoint_only() {
    let waypoint = |namespace: &str, name: &str| Scope::Waypoint { namespace: namespace.into(), name: name.into() };
    let node = |name: &str| Scope::Node { name: name.into() };
    let (ca, _) = ca_reviewing_with("tokenreview-waypoint.json");
    let caller = ca.authenticate(&bearer()).await.unwrap();
    assert!(matches!(&caller, Caller::Waypoint(w) if w.name().to_string() == "shop/waypoint"), "{caller:?}");
    admit(&caller, &waypoint("shop", "waypoint")).expect("the waypoint as itself");
    for (scope, named) in [(waypoint("shop", "other"), "waypoint shop/other"), (node("node-2"), "node node-2")] {
        let refused = admit(&caller, &scope).unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        let expected = format!("the credential proves waypoint shop/waypoint, but the subscription names {named}");
        assert!(refused.message().starts_with(&expected), "{refused:?}");
    }
    // The node proxy's token does not make it a waypoint.
    let (ca, _) = ca_reviewing_with("tokenreview-node.json");
    let caller = ca.authenticate(&bearer()).await.unwrap();
    let refused = admit(&caller, &waypoint("shop", "waypoint")).unwrap_err();
    assert!(refused.message().starts_with("the credential proves node node-1, but the subscription names waypoint"));
}

#[tokio::test]
async fn the_root_secret_is_created_on_first_start_and_reused() {
    let server = Arc::new(Mutex::new(ApiServer::default()));
    let first = secret::load_or_create(client(server.clone()), "istio-system", "cluster.local").await.unwrap();
    assert!(matches!(first.info().origin, RootOrigin::Generated { .. }));
    {
        let api = server.lock().unwrap();
        let created: Secret = serde_json::from_slice(&api.secrets["ambit-ca"]).unwrap();
        let data = created.data.unwrap();
        assert!(data.contains_key("ca.crt") && data.contains_key("ca.key"), "{:?}", data.keys());
        let paths: Vec<String> = api.seen.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        assert_eq!(
            paths,
            [format!("GET {SECRETS}/cacerts"), format!("GET {SECRETS}/ambit-ca"), format!("POST {SECRETS}")]
        );
    }
    let again = secret::load_or_create(client(server), "istio-system", "cluster.local").await.unwrap();
    assert!(matches!(again.info().origin, RootOrigin::Persisted { .. }));
    assert_eq!(again.info().root_fingerprint, first.info().root_fingerprint);
}

#[tokio::test]
async fn a_replica_that_loses_the_creation_race_uses_the_winners_root() {
    let winner = Arc::new(Mutex::new(ApiServer::default()));
    let theirs = secret::load_or_create(client(winner.clone()), "istio-system", "cluster.local").await.unwrap();
    let stored = winner.lock().unwrap().secrets["ambit-ca"].clone();
    let api = ApiServer { race: Some(("ambit-ca".into(), stored)), ..Default::default() };
    let ours =
        secret::load_or_create(client(Arc::new(Mutex::new(api))), "istio-system", "cluster.local").await.unwrap();
    assert_eq!(ours.info().root_fingerprint, theirs.info().root_fingerprint, "one root for every replica");
}

#[tokio::test]
async fn istios_cacerts_secret_is_used_when_present() {
    let root = identity::testing::TestCa::new("cluster.local");
    // cacerts holding a root as its own CA (Istio's simplest plug-in: ca-cert = root-cert).
    let data = [
        ("ca-cert.pem", root.root_pem()),
        ("ca-key.pem", root.key_pem()),
        ("root-cert.pem", root.root_pem()),
        ("cert-chain.pem", root.root_pem()),
    ];
    let cacerts = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("cacerts".into()),
            namespace: Some("istio-system".into()),
            ..Default::default()
        },
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect()),
        ..Default::default()
    };
    let mut api = ApiServer::default();
    api.secrets.insert("cacerts".into(), serde_json::to_vec(&cacerts).unwrap());
    let server = Arc::new(Mutex::new(api));
    let loaded = secret::load_or_create(client(server.clone()), "istio-system", "cluster.local").await.unwrap();
    assert_eq!(loaded.info().origin, RootOrigin::PlugIn { at: "Secret istio-system/cacerts".into() });
    assert!(loaded.intermediates_pem().is_empty(), "the root is never sent as an intermediate");
    assert_eq!(loaded.bundle().to_pem(), root.root_pem());
    assert_eq!(server.lock().unwrap().seen.len(), 1, "nothing else read or created");
}

#[tokio::test]
async fn a_cacerts_secret_without_its_key_says_what_is_missing() {
    let cacerts = Secret {
        metadata: kube::api::ObjectMeta { name: Some("cacerts".into()), ..Default::default() },
        data: Some([("ca-cert.pem".to_owned(), ByteString(b"x".to_vec()))].into()),
        ..Default::default()
    };
    let mut api = ApiServer::default();
    api.secrets.insert("cacerts".into(), serde_json::to_vec(&cacerts).unwrap());
    let err =
        secret::load_or_create(client(Arc::new(Mutex::new(api))), "istio-system", "cluster.local").await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "Secret istio-system/cacerts has no key \"ca-key.pem\" (it holds: ca-cert.pem): Istio's plug-in format \
         needs ca-cert.pem and ca-key.pem"
    );
}
