//! The Kubernetes source (`source::kube`) against recorded API responses.
//!
//! A real API server cannot run on this machine, so these tests drive a real `kube::Client`
//! over a `tower_test` mock service. A small server loop routes each request by URL path (the
//! resource) and query (`watch=true`) to that resource's script of recorded responses in
//! `fixtures/kube/`: list responses with `metadata.resourceVersion`, watch streams as
//! newline-delimited JSON events (including an `ERROR` event with a 410 `Status`), and the
//! API server's 404/403 `Status` bodies. Unscripted lists answer with `<resource>.json`;
//! unscripted watches stay open and silent, as an idle watch does.
//!
//! Nothing sleeps to wait for readiness: tests hold responses back behind gates and wait for
//! readings on the channel with a bounded timeout.

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    time::Duration,
};

use ambit_common::config::{ConfigStore, Kind, ParseOutcome};
use ambit_control_plane::source::kube::{self as kube_source, KubeOptions, Running};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Channel, Full, combinators::UnsyncBoxBody};
use kube::client::Body;
use tokio::{
    sync::{mpsc, oneshot},
    time::timeout,
};

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// Long enough for one watcher backoff (0.8 s, up to twice that with jitter) and then some.
const WAIT: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/kube/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")).into()
}

/// One scripted answer.
enum Reply {
    /// A whole response: a list, a finite watch stream, an error `Status`.
    Body(StatusCode, Bytes),
    /// Held back until the test opens the gate.
    Gated(oneshot::Receiver<()>, Box<Reply>),
}

impl Reply {
    fn ok(name: &str) -> Self {
        Reply::Body(StatusCode::OK, fixture(name))
    }

    fn gated(self) -> (oneshot::Sender<()>, Self) {
        let (open, gate) = oneshot::channel();
        (open, Reply::Gated(gate, Box::new(self)))
    }
}

/// Scripted replies per resource (`pods`, `virtualservices` …), consumed in order.
#[derive(Default)]
struct Script {
    lists: BTreeMap<&'static str, VecDeque<Reply>>,
    watches: BTreeMap<&'static str, VecDeque<Reply>>,
}

impl Script {
    fn list(mut self, resource: &'static str, reply: Reply) -> Self {
        self.lists.entry(resource).or_default().push_back(reply);
        self
    }

    fn watch(mut self, resource: &'static str, reply: Reply) -> Self {
        self.watches.entry(resource).or_default().push_back(reply);
        self
    }
}

/// A request the mock answered: resource, whether it was a watch, and its query.
#[derive(Debug)]
struct Seen {
    resource: String,
    watch: bool,
    query: String,
}

async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<MockBody>>,
    mut script: Script,
    seen: mpsc::UnboundedSender<Seen>,
) {
    while let Some((request, respond)) = handle.next_request().await {
        let resource = request.uri().path().rsplit('/').next().unwrap_or_default().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let watch = query.split('&').any(|p| p == "watch=true");
        let scripted = if watch { &mut script.watches } else { &mut script.lists };
        let reply = scripted.get_mut(resource.as_str()).and_then(VecDeque::pop_front);
        let reply = match reply {
            Some(reply) => Some(reply),
            None if watch => None,
            None => Some(Reply::ok(&format!("{resource}.json"))),
        };
        let _ = seen.send(Seen { resource, watch, query });
        tokio::spawn(answer(reply, respond));
    }
}

/// Sends `reply`, or for `None` an open watch that never says anything.
async fn answer(reply: Option<Reply>, respond: tower_test::mock::SendResponse<Response<MockBody>>) {
    let mut reply = reply;
    while let Some(Reply::Gated(gate, inner)) = reply {
        let _ = gate.await;
        reply = Some(*inner);
    }
    match reply {
        Some(Reply::Body(status, body)) => {
            let response = Response::builder().status(status).header("content-type", "application/json");
            respond.send_response(response.body(Full::new(body).boxed_unsync()).expect("a valid response"));
        }
        Some(Reply::Gated(..)) => unreachable!("gates were opened above"),
        None => {
            let (_keep_open, body) = Channel::<Bytes, Infallible>::new(1);
            respond.send_response(Response::new(body.boxed_unsync()));
            std::future::pending::<()>().await;
        }
    }
}

struct Cluster {
    readings: mpsc::Receiver<ParseOutcome>,
    seen: mpsc::UnboundedReceiver<Seen>,
    source: Running,
}

fn start(script: Script) -> Cluster {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(serve(handle, script, seen_tx));
    let client = kube::Client::new(service, "default");
    let (tx, readings) = mpsc::channel(4);
    let options = KubeOptions { debounce: Duration::from_millis(20), max_delay: Duration::from_millis(500) };
    Cluster { readings, seen, source: kube_source::run(client, tx, options) }
}

impl Cluster {
    async fn reading(&mut self) -> ParseOutcome {
        let next = timeout(WAIT, self.readings.recv()).await.expect("a reading within the time limit");
        next.expect("the source is running")
    }

    /// The first reading that satisfies `wanted`; earlier ones are skipped.
    async fn reading_where(&mut self, wanted: impl Fn(&ParseOutcome) -> bool) -> ParseOutcome {
        let wait = async {
            loop {
                let reading = self.reading().await;
                if wanted(&reading) {
                    return reading;
                }
            }
        };
        timeout(WAIT, wait).await.expect("the expected reading within the time limit")
    }

    /// Waits until the mock has answered a watch request for each of `resources`.
    async fn watched(&mut self, resources: &[&str]) {
        let mut missing: Vec<&str> = resources.to_vec();
        let wait = async {
            while !missing.is_empty() {
                let seen = self.seen.recv().await.expect("the mock is serving");
                missing.retain(|r| !(seen.watch && seen.resource == *r));
            }
        };
        timeout(WAIT, wait).await.expect("watch requests within the time limit");
    }

    fn requests(&mut self) -> Vec<Seen> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }
}

/// `namespace/name` of the reading's objects of `kind`.
fn names(reading: &ParseOutcome, kind: Kind) -> Vec<String> {
    let of_kind = reading.objects.iter().filter(|o| o.object.kind() == kind);
    of_kind.map(|o| format!("{}/{}", o.object.meta().namespace, o.object.meta().name)).collect()
}

fn counts(reading: &ParseOutcome) -> BTreeMap<Kind, usize> {
    let mut out = BTreeMap::new();
    for o in &reading.objects {
        *out.entry(o.object.kind()).or_default() += 1;
    }
    out
}

fn small_cluster() -> BTreeMap<Kind, usize> {
    use Kind::*;
    let counts = [
        (Namespace, 2),
        (Pod, 4),
        (Service, 3),
        (EndpointSlice, 3),
        (ServiceAccount, 4),
        (Gateway, 1),
        (VirtualService, 2),
        (DestinationRule, 2),
        (ServiceEntry, 1),
        (AuthorizationPolicy, 1),
        (PeerAuthentication, 1),
    ];
    counts.into_iter().collect()
}

#[tokio::test]
async fn initial_list_of_every_kind_is_one_complete_reading() {
    let mut cluster = start(Script::default());
    let reading = cluster.reading().await;
    assert_eq!(counts(&reading), small_cluster());
    assert!(reading.errors.is_empty(), "{:?}", reading.errors);
    assert!(*cluster.source.ready().borrow());
    let pod = reading.objects.iter().find(|o| o.object.kind() == Kind::Pod).expect("pods");
    assert_eq!(pod.origin.source, "kubernetes:Pod/bookinfo/productpage-v1-6b746f74dc-9stvs");
    let lists: Vec<String> = cluster.requests().into_iter().filter(|s| !s.watch).map(|s| s.resource).collect();
    assert_eq!(lists.len(), Kind::ALL.len(), "one list per kind: {lists:?}");

    // The store accepts the whole reading: cross-object references (subsets, hosts) resolve.
    let mut store = ConfigStore::new();
    let snapshot = store.apply(reading);
    assert!(store.rejections().is_empty(), "{:?}", store.rejections());
    assert_eq!(snapshot.version(), 1);
}

#[tokio::test]
async fn nothing_is_sent_until_every_kind_is_listed() {
    let (open, pods) = Reply::ok("pods.json").gated();
    let mut cluster = start(Script::default().list("pods", pods));
    // A watch request follows a kind's InitDone: every other kind has been listed and handled.
    let others = [
        "namespaces",
        "services",
        "endpointslices",
        "serviceaccounts",
        "gateways",
        "virtualservices",
        "destinationrules",
        "serviceentries",
        "authorizationpolicies",
        "peerauthentications",
    ];
    cluster.watched(&others).await;
    assert!(!*cluster.source.ready().borrow());
    // Proving an absence takes a wait; a few debounce periods are enough to see a premature send.
    assert!(timeout(Duration::from_millis(200), cluster.readings.recv()).await.is_err(), "no partial reading");

    open.send(()).expect("the mock waits at the gate");
    let reading = cluster.reading().await;
    assert_eq!(counts(&reading), small_cluster(), "the first reading has the pods");
    assert!(*cluster.source.ready().borrow());
}

#[tokio::test]
async fn watch_events_show_in_the_next_reading() {
    let (open, events) = Reply::ok("pods-watch.ndjson").gated();
    let mut cluster = start(Script::default().watch("pods", events));
    let first = cluster.reading().await;
    assert!(names(&first, Kind::Pod).contains(&"shop/web-5c8d7f9b6d-q2w8e".to_string()));

    open.send(()).expect("the mock waits at the gate"); // ADDED reviews-v3, MODIFIED reviews-v1, DELETED web
    // Usually one batch; a reading between two of the events would be fine too.
    let web = "shop/web-5c8d7f9b6d-q2w8e".to_string();
    let next = cluster.reading_where(|r| !names(r, Kind::Pod).contains(&web)).await;
    let pods = names(&next, Kind::Pod);
    assert!(pods.iter().any(|n| n.contains("reviews-v3")), "added pod present: {pods:?}");
    assert_eq!(pods.len(), 4, "{pods:?}");
    let v1 = next.objects.iter().find(|o| o.object.meta().name.starts_with("reviews-v1")).expect("reviews-v1");
    assert_eq!(v1.object.meta().labels.get("canary").map(String::as_str), Some("true"), "modified pod updated");
    assert_eq!(next.objects.len(), first.objects.len(), "one added, one deleted, the rest unchanged");
}

#[tokio::test]
async fn watch_error_410_relists_and_the_relist_replaces_the_kind() {
    let (open, gone) = Reply::ok("watch-gone.ndjson").gated();
    let script = Script::default().list("pods", Reply::ok("pods.json")).list("pods", Reply::ok("pods-relist.json"));
    let mut cluster = start(script.watch("pods", gone));
    let first = cluster.reading().await;
    assert!(names(&first, Kind::Pod).contains(&"shop/web-5c8d7f9b6d-q2w8e".to_string()));

    open.send(()).expect("the mock waits at the gate");
    let relisted = cluster.reading_where(|r| names(r, Kind::Pod).iter().any(|n| n.ends_with("z8k4m"))).await;
    let pods = names(&relisted, Kind::Pod);
    assert!(!pods.contains(&"shop/web-5c8d7f9b6d-q2w8e".to_string()), "gone during the outage: {pods:?}");
    assert_eq!(pods.len(), 4, "{pods:?}");
    let v2 = relisted.objects.iter().find(|o| o.object.meta().name.starts_with("reviews-v2")).expect("reviews-v2");
    let Ok(v2_json) = serde_json::to_value(&v2.object) else { panic!("dumpable") };
    assert!(v2_json.to_string().contains("10.244.2.13"), "moved pod has its new IP: {v2_json}");

    let pod_requests: Vec<Seen> = cluster.requests().into_iter().filter(|s| s.resource == "pods").collect();
    assert_eq!(pod_requests.iter().filter(|s| !s.watch).count(), 2, "list, then relist: {pod_requests:?}");
    let first_watch = pod_requests.iter().find(|s| s.watch).expect("a pod watch");
    assert!(first_watch.query.contains("resourceVersion=1200"), "{first_watch:?}");
}

#[tokio::test]
async fn invalid_istio_object_is_reported_and_the_rest_is_unaffected() {
    let (open, typo) = Reply::ok("virtualservices-watch.ndjson").gated();
    let mut cluster = start(Script::default().watch("virtualservices", typo));
    let first = cluster.reading().await;
    let mut store = ConfigStore::new();
    store.apply(first.clone());

    open.send(()).expect("the mock waits at the gate"); // MODIFIED reviews with `weigth`
    let bad = cluster.reading_where(|r| !r.errors.is_empty()).await;
    let [error] = bad.errors.as_slice() else { panic!("one error: {:?}", bad.errors) };
    let message = error.to_string();
    assert!(
        message.starts_with("VirtualService/bookinfo/reviews: spec.http[1].route[1]: unknown field `weigth`"),
        "{message}"
    );
    assert!(message.contains("did you mean `weight`?"), "{message}");
    assert!(message.contains("kubernetes:VirtualService/bookinfo/reviews"), "{message}");
    assert_eq!(names(&bad, Kind::VirtualService), ["bookinfo/productpage"]);
    assert_eq!(bad.objects.len(), first.objects.len() - 1, "every other object is still there");

    // The store keeps the last good reviews in force.
    let snapshot = store.apply(bad);
    let [rejection] = store.rejections() else { panic!("one rejection") };
    assert!(rejection.last_good_kept);
    assert_eq!(snapshot.version(), 1, "the effective config did not change");
}

#[tokio::test]
async fn missing_crd_and_forbidden_kind_count_as_empty() {
    let not_found = || Reply::Body(StatusCode::NOT_FOUND, fixture("status-404.json"));
    let forbidden = || Reply::Body(StatusCode::FORBIDDEN, fixture("status-403.json"));
    // The retry is held back until the first reading is in, so that reading cannot have it.
    let (installed, crd_listed) = Reply::ok("serviceentries.json").gated();
    let mut script = Script::default().list("serviceentries", not_found()).list("serviceentries", crd_listed);
    for _ in 0..5 {
        script = script.list("peerauthentications", forbidden()); // more than the test lives to retry
    }
    let mut cluster = start(script);
    let reading = cluster.reading().await;
    let mut expected = small_cluster();
    expected.remove(&Kind::ServiceEntry);
    expected.remove(&Kind::PeerAuthentication);
    assert_eq!(counts(&reading), expected);
    assert!(reading.errors.is_empty(), "an absent kind is not an object error: {:?}", reading.errors);
    assert!(*cluster.source.ready().borrow());

    // The CRD is installed later: the watcher's retry (after its backoff) lists it.
    installed.send(()).expect("the mock waits at the gate");
    let later = cluster.reading_where(|r| !names(r, Kind::ServiceEntry).is_empty()).await;
    assert_eq!(names(&later, Kind::ServiceEntry), ["shop/httpbin-ext"]);
    assert!(names(&later, Kind::PeerAuthentication).is_empty());
}
