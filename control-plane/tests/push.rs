//! The Discovery protocol end to end over real gRPC on loopback: the control plane's push server
//! and the proxies' subscriber (`ambit_common::discovery`), with the configuration driven by hand.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{
    api::v1::{Hello, Namespace, Resource, ResourceType, hello, resource::Kind},
    discovery::{ConnectionStatus, ResourceSet, SubscriberConfig, subscribe},
};
use ambit_control_plane::{
    compile::Compiled,
    metrics::Metrics,
    push::{DiscoveryService, Subscriptions, state::PushState},
};
use tokio::sync::{oneshot, watch};
use tonic::transport::{Server, server::TcpIncoming};

fn namespace(name: &str) -> Resource {
    Resource {
        name: name.into(),
        kind: Some(Kind::Namespace(Namespace { name: name.into(), labels: Default::default() })),
    }
}

fn compiled(version: u64, namespaces: &[&str]) -> Compiled {
    Compiled { version, shared: namespaces.iter().map(|n| namespace(n)).collect(), ..Default::default() }
}

struct ControlPlane {
    addr: SocketAddr,
    config: watch::Sender<Arc<PushState>>,
    subscriptions: Arc<Subscriptions>,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
}

impl ControlPlane {
    async fn start(addr: SocketAddr, first: &Compiled) -> Self {
        let metrics = Arc::new(Metrics::default());
        let (config, state) = watch::channel(Arc::new(PushState::new(first, None)));
        let subscriptions = Arc::new(Subscriptions::new(state, metrics.clone()));
        let incoming = TcpIncoming::bind(addr).expect("bind loopback");
        let addr = incoming.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = DiscoveryService::new(subscriptions.clone());
        tokio::spawn(async move {
            let _ = Server::builder()
                .serve_with_incoming_shutdown(service, incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { addr, config, subscriptions, metrics, stop: Some(stop) }
    }

    fn publish(&self, next: &Compiled) {
        let previous = self.config.borrow().clone();
        self.config.send_replace(Arc::new(PushState::new(next, Some(&previous))));
    }

    fn pushes(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.metrics.pushes_full.load(Relaxed), self.metrics.pushes_delta.load(Relaxed))
    }
}

struct Proxy {
    state: watch::Receiver<Arc<ResourceSet>>,
    status: watch::Receiver<ConnectionStatus>,
    task: tokio::task::JoinHandle<()>,
}

/// A node proxy subscriber that refuses (NACKs) any configuration holding a namespace "poison".
fn proxy(addr: SocketAddr, node: &str) -> Proxy {
    let hello = Hello { proxy: Some(hello::Proxy::Node(node.into())), proxy_version: "test".into() };
    let mut config = SubscriberConfig::new(format!("http://{addr}"), hello);
    config.backoff_base = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    let (state_tx, state) = watch::channel(Arc::new(ResourceSet::default()));
    let (status_tx, status) = watch::channel(ConnectionStatus::default());
    let validate = |set: &ResourceSet| match set.get(ResourceType::Namespace, "poison") {
        Some(_) => Err("namespace poison is not acceptable".to_owned()),
        None => Ok(()),
    };
    let task = tokio::spawn(subscribe(config, validate, state_tx, status_tx));
    Proxy { state, status, task }
}

fn names(set: &Arc<ResourceSet>) -> Vec<String> {
    set.of_type(ResourceType::Namespace).map(|r| r.name.clone()).collect()
}

/// Waits (bounded) until the proxy's configuration is at `version`.
async fn wait_version(proxy: &mut Proxy, version: u64) -> Arc<ResourceSet> {
    let wait = proxy.state.wait_for(|s| s.version() == version);
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("timely update").expect("subscriber alive").clone()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_first_then_deltas_with_acks() {
    let cp = ControlPlane::start("127.0.0.1:0".parse().unwrap(), &compiled(1, &["a", "b"])).await;
    let mut p = proxy(cp.addr, "node-1");
    assert_eq!(names(&wait_version(&mut p, 1).await), ["a", "b"]);

    cp.publish(&compiled(2, &["a", "c"]));
    assert_eq!(names(&wait_version(&mut p, 2).await), ["a", "c"]);
    assert_eq!(cp.pushes(), (1, 1), "one full update, then a delta");

    wait_until("the ACK of version 2", || {
        cp.subscriptions.registry.list().first().is_some_and(|s| s.acked_version == 2 && s.sent_version == 2)
    })
    .await;
    // Version 3 changes nothing for proxies: nothing is sent for it, and version 4 is one delta.
    cp.publish(&compiled(3, &["a", "c"]));
    cp.publish(&compiled(4, &["c"]));
    assert_eq!(names(&wait_version(&mut p, 4).await), ["c"]);
    assert_eq!(cp.pushes(), (1, 2));
    p.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_keeps_the_last_good_config_and_the_next_update_is_full() {
    let cp = ControlPlane::start("127.0.0.1:0".parse().unwrap(), &compiled(1, &["a"])).await;
    let mut p = proxy(cp.addr, "node-1");
    wait_version(&mut p, 1).await;

    cp.publish(&compiled(2, &["a", "poison"]));
    wait_until("the NACK", || cp.subscriptions.registry.list().first().is_some_and(|s| s.nacks == 1)).await;
    assert_eq!(names(&p.state.borrow()), ["a"], "the refused update changed nothing");
    assert_eq!(p.status.borrow().nacks_sent, 1);
    let nack = cp.subscriptions.registry.list()[0].last_nack.clone().unwrap();
    assert!(nack.contains("poison is not acceptable"), "{nack}");

    cp.publish(&compiled(3, &["a", "d"]));
    assert_eq!(names(&wait_version(&mut p, 3).await), ["a", "d"]);
    assert_eq!(cp.pushes(), (2, 1), "after a NACK the next update is full");
    p.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_gets_resubscribed_and_sends_a_fresh_snapshot() {
    let mut cp = ControlPlane::start("127.0.0.1:0".parse().unwrap(), &compiled(5, &["a"])).await;
    let addr = cp.addr;
    let mut p = proxy(addr, "node-1");
    wait_version(&mut p, 5).await;

    cp.subscriptions.close_all();
    let _ = cp.stop.take().unwrap().send(());
    wait_until("the subscriber to notice", || !p.status.borrow().connected).await;
    assert_eq!(names(&p.state.borrow()), ["a"], "the last config stays in force while disconnected");

    // A new control plane process starts its versions again; the full update replaces everything.
    let cp = ControlPlane::start(addr, &compiled(1, &["b", "c"])).await;
    assert_eq!(names(&wait_version(&mut p, 1).await), ["b", "c"]);
    assert_eq!(cp.pushes().0, 1);
    assert!(p.status.borrow().connected);
    p.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_proxies_receive_only_their_workloads_authorizations() {
    use ambit_common::api::v1::{Authorization, Workload};
    let workload = |node: &str, policy: &str| Workload {
        node: node.into(),
        namespace: "ns".into(),
        authorization_policies: vec![policy.into()],
        ..Default::default()
    };
    let authz = |name: &str| Resource {
        name: name.into(),
        kind: Some(Kind::Authorization(Authorization { name: name.into(), ..Default::default() })),
    };
    let mut config = compiled(1, &["ns"]);
    config.shared.push(Resource { name: "w1".into(), kind: Some(Kind::Workload(workload("node-1", "ns/p1"))) });
    config.shared.push(Resource { name: "w2".into(), kind: Some(Kind::Workload(workload("node-2", "ns/p2"))) });
    config.authorizations = [("ns/p1".to_owned(), authz("ns/p1")), ("ns/p2".to_owned(), authz("ns/p2"))].into();
    let cp = ControlPlane::start("127.0.0.1:0".parse().unwrap(), &config).await;
    let mut p = proxy(cp.addr, "node-1");
    let set = wait_version(&mut p, 1).await;
    let policies: Vec<&str> = set.of_type(ResourceType::Authorization).map(|r| r.name.as_str()).collect();
    assert_eq!(policies, ["ns/p1"]);
    assert_eq!(set.of_type(ResourceType::Workload).count(), 2, "every workload goes to every node");
    p.task.abort();
}
