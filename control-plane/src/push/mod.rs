//! The Discovery service: one task per subscribed proxy sends it a full update first, then
//! deltas as the configuration changes, and reads its ACKs and NACKs. A NACK makes the next
//! update full. Slow subscribers are never waited for by others: each reads the latest state
//! when it is ready, skipping intermediate versions.

pub mod admission;
mod codec;
pub mod registry;
pub mod state;
pub mod view;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ambit_common::api::v1::{SubscribeRequest, hello::Proxy, subscribe_request::Message};
pub use codec::{DiscoveryService, SUBSCRIBE_PATH};
use registry::Registry;
use state::{PushState, Scope};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, metadata::MetadataMap};
use view::{EncodedUpdate, View, delta_update, full_update};

use crate::{ca::Ca, metrics::Metrics};

/// How long a new stream may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Subscriptions {
    state: watch::Receiver<Arc<PushState>>,
    pub registry: Registry,
    metrics: Arc<Metrics>,
    /// Flipped by [`Subscriptions::close_all`]: every stream ends, so a graceful server shutdown
    /// does not wait forever for subscriptions that never end on their own.
    closing: watch::Sender<bool>,
    /// When set, a subscriber must prove the node or waypoint it names with the credential the CA
    /// accepts (the configuration names every workload and policy in the mesh: not for anyone
    /// who asks).
    authenticator: Option<Arc<Ca>>,
}

type UpdateStream = ReceiverStream<Result<EncodedUpdate, Status>>;

impl Subscriptions {
    pub fn new(state: watch::Receiver<Arc<PushState>>, metrics: Arc<Metrics>) -> Self {
        Self { state, registry: Registry::default(), metrics, closing: watch::channel(false).0, authenticator: None }
    }

    /// Requires subscribers to prove who they are with `ca`'s credentials (node and waypoint
    /// tokens, or TokenReview in Kubernetes).
    pub fn authenticated_by(mut self, ca: Arc<Ca>) -> Self {
        self.authenticator = Some(ca);
        self
    }

    /// Whether `metadata` proves the subscriber is `scope`; the refusal says what to fix.
    async fn check_subscriber(&self, metadata: &MetadataMap, scope: &Scope) -> Result<(), Status> {
        let Some(ca) = &self.authenticator else { return Ok(()) };
        let caller = ca.authenticate(metadata).await.map_err(|refusal| {
            let status = refusal.to_status();
            Status::new(status.code(), format!("subscription as {} refused: {refusal}", admission::describe(scope)))
        })?;
        admission::admit(&caller, scope)
    }

    /// Ends every subscription (proxies reconnect, to this control plane's successor).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    async fn subscribe(
        self: Arc<Self>,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<UpdateStream>, Status> {
        let peer = request.remote_addr();
        let metadata = request.metadata().clone();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(SubscribeRequest { message: Some(Message::Hello(hello)) }))) => hello,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message on a stream must be a Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let scope = match hello.proxy {
            Some(Proxy::Node(name)) if !name.is_empty() => Scope::Node { name },
            Some(Proxy::Waypoint(w)) if !w.namespace.is_empty() && !w.name.is_empty() => {
                Scope::Waypoint { namespace: w.namespace, name: w.name }
            }
            _ => return Err(Status::invalid_argument("Hello must name a node or a waypoint (namespace and name)")),
        };
        if let Err(status) = self.check_subscriber(&metadata, &scope).await {
            tracing::warn!(proxy = %scope, ?peer, error = status.message(), "subscription refused");
            return Err(status);
        }
        let id = self.registry.add(scope.clone(), peer, hello.proxy_version);
        tracing::info!(proxy = %scope, ?peer, "proxy subscribed");
        let (updates, stream) = mpsc::channel(1);
        tokio::spawn(self.clone().serve(id, scope, inbound, updates));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn serve(
        self: Arc<Self>,
        id: u64,
        scope: Scope,
        mut inbound: Streaming<SubscribeRequest>,
        updates: mpsc::Sender<Result<EncodedUpdate, Status>>,
    ) {
        let mut state_rx = self.state.clone();
        let mut closing = self.closing.subscribe();
        let mut sent: Option<View> = None;
        let mut sent_version = 0;
        // The version of the last update actually put on the wire, and the last one acknowledged.
        let (mut wire_version, mut acked_version) = (0, 0);
        let mut need_full = true;
        // Versions sent and not yet acknowledged, with when they were compiled.
        let mut in_flight: BTreeMap<u64, Instant> = BTreeMap::new();
        let reason = loop {
            let state = state_rx.borrow_and_update().clone();
            if state.version != 0 && state.version != sent_version {
                let view = state.view(&scope);
                let update = match (&sent, need_full) {
                    (Some(old), false) => {
                        let shared = state.shared_delta(&old.shared, &view.shared);
                        delta_update(state.version, old, &view, &shared)
                    }
                    _ => full_update(state.version, &view),
                };
                if update.full || update.changes > 0 {
                    let (full, bytes) = (update.full, update.len() as u64);
                    if updates.send(Ok(update)).await.is_err() {
                        break "the proxy went away";
                    }
                    self.record_sent(id, state.version, full, bytes);
                    in_flight.insert(state.version, state.created);
                    wire_version = state.version;
                } else if acked_version == wire_version {
                    // Nothing changed for this proxy and nothing is pending: it is in sync.
                    self.registry.update(id, |s| s.in_sync_version = state.version);
                }
                sent = Some(view);
                sent_version = state.version;
                need_full = false;
            }
            if *closing.borrow_and_update() {
                break "the control plane is shutting down";
            }
            tokio::select! {
                _ = closing.changed() => continue,
                changed = state_rx.changed() => if changed.is_err() { break "the control plane is shutting down" },
                message = inbound.message() => match message {
                    Ok(Some(SubscribeRequest { message: Some(Message::Ack(ack)) })) => {
                        if !ack.error.is_empty() {
                            need_full = true;
                        } else {
                            acked_version = ack.version;
                            if ack.version == wire_version {
                                // What the proxy holds is what `sent_version` compiles to.
                                self.registry.update(id, |s| s.in_sync_version = sent_version);
                            }
                        }
                        self.record_ack(id, &scope, ack.version, &ack.error, &mut in_flight);
                    }
                    Ok(Some(_)) => tracing::warn!(proxy = %scope, "ignoring an unexpected message (a second Hello?)"),
                    Ok(None) => break "the proxy closed the stream",
                    Err(_) => break "the stream broke",
                },
            }
        };
        self.registry.remove(id);
        tracing::info!(proxy = %scope, reason, "proxy unsubscribed");
    }

    fn record_sent(&self, id: u64, version: u64, full: bool, bytes: u64) {
        let counter = if full { &self.metrics.pushes_full } else { &self.metrics.pushes_delta };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.push_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.registry.update(id, |s| {
            s.sent_version = version;
            s.updates_sent += 1;
        });
    }

    fn record_ack(&self, id: u64, scope: &Scope, version: u64, error: &str, in_flight: &mut BTreeMap<u64, Instant>) {
        let compiled_at = in_flight.remove(&version);
        in_flight.retain(|v, _| *v > version);
        if error.is_empty() {
            if let Some(at) = compiled_at {
                self.metrics.convergence.observe(at.elapsed());
            }
            self.registry.update(id, |s| s.acked_version = version);
        } else {
            tracing::error!(proxy = %scope, version, error, "proxy refused an update (NACK); it keeps its previous configuration");
            self.metrics.nacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.registry.update(id, |s| {
                s.nacks += 1;
                s.last_nack = Some(format!("version {version}: {error}"));
            });
        }
    }
}
