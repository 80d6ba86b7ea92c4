//! The Kubernetes source: one `kube` runtime watcher per kind of the config model (Namespaces,
//! Pods, Services, EndpointSlices, ServiceAccounts, Gateway API Gateways and Istio's
//! VirtualServices, DestinationRules, ServiceEntries, AuthorizationPolicies and
//! PeerAuthentications), cluster-wide, each feeding a cache of converted objects; a batch of
//! watch events becomes one complete reading ([`ParseOutcome`]) built from those caches.
//!
//! - **Readiness.** Nothing is sent until every watcher has finished its initial list (or been
//!   told its kind does not exist): a partial first reading would make the control plane push a
//!   cluster without pods. [`Running::ready`] turns true once that first reading is sent; the
//!   control plane's `/ready` reports it.
//! - **Once per change.** Every object is converted (to a model object or a
//!   [`ConfigError`](ambit_common::config::ConfigError)) when a version of it arrives, and the
//!   result is cached by kind, namespace and name (`cache`): a pod change re-converts one
//!   pod, not the cluster. Conversion goes from the object's JSON straight into common's raw
//!   serde types (`convert`).
//! - **Batches.** After a change the source waits [`KubeOptions::debounce`] for more (each new
//!   event restarts the wait, up to [`KubeOptions::max_delay`] after the first), then sends one
//!   reading. A slow consumer makes it coalesce further: the reading is built only once the
//!   channel has room.
//! - **Errors.** Watchers retry with kube's `default_backoff` and relist after a watch error
//!   (410 Gone …); a relist replaces the kind's cached set, so objects deleted meanwhile
//!   disappear. A kind the API server does not serve (CRD not installed) or forbids (RBAC) is
//!   reported once, counts as empty and keeps being retried (`problems`).
//! - Objects are read as `DynamicObject`s, not k8s-openapi's typed structs: common's raw types
//!   are the schema for every kind (strict for Istio's, lenient for Kubernetes'), Istio's CRDs
//!   have no typed structs anyway, and one code path serves all eleven kinds.
//!
//! Each object's origin in messages is `kubernetes:<Kind>/<namespace>/<name>`.

mod cache;
mod convert;
mod problems;
mod resources;

use std::time::Duration;

use ambit_common::config::ParseOutcome;
use futures::{StreamExt, stream::BoxStream};
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use self::{
    cache::{KindCache, Listing},
    problems::Reporter,
    resources::Resource,
};
use super::ReadingSender;

/// How the Kubernetes source batches changes.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// Quiet time after a change before a reading is sent.
    pub debounce: Duration,
    /// Upper bound on the wait from the first change of a batch, so a steady stream of events
    /// cannot hold readings back.
    pub max_delay: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions { debounce: Duration::from_millis(50), max_delay: Duration::from_secs(1) }
    }
}

/// The running watchers. They stop when this is dropped or the readings' receiver closes.
#[must_use = "the Kubernetes watchers stop when `Running` is dropped"]
#[derive(Debug)]
pub struct Running {
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Turns true once the first complete reading (every kind listed) has been sent, and stays
    /// true: later watch errors keep the last state of the affected kind until it relists.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the cluster `client` talks to, on the current Tokio runtime; complete
/// readings go to `tx` (see the [module docs](self) for when).
pub fn run(client: Client, tx: ReadingSender, options: KubeOptions) -> Running {
    let (ready_tx, ready) = watch::channel(false);
    let task = tokio::spawn(Box::pin(watch_loop(client, tx, options, ready_tx)));
    Running { ready, task }
}

/// One kind: its watcher's events applied to its cache.
struct Watched {
    cache: KindCache,
    reporter: Reporter,
}

impl Watched {
    /// Returns whether the next reading differs.
    fn handle(&mut self, event: Result<Event<DynamicObject>, watcher::Error>) -> bool {
        match event {
            Ok(event) => {
                let done = matches!(event, Event::InitDone);
                let changed = self.cache.apply(event);
                if done {
                    self.reporter.listed(&self.cache.resource, self.cache.len());
                }
                changed
            }
            Err(error) => {
                let empty = self.reporter.report(&self.cache.resource, &error);
                if empty { self.cache.unavailable() } else { false }
            }
        }
    }
}

type Events = BoxStream<'static, (usize, Result<Event<DynamicObject>, watcher::Error>)>;

/// One stream of all watchers' events, each tagged with its kind's index in `resources`.
fn watch_all(client: &Client, resources: &[Resource]) -> Events {
    let streams = resources.iter().enumerate().map(|(i, resource)| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource.api);
        watcher(api, watcher::Config::default()).default_backoff().map(move |event| (i, event)).boxed()
    });
    futures::stream::select_all(streams).boxed()
}

/// When the pending batch is due.
#[derive(Debug, Default)]
struct Batch {
    first: Option<Instant>,
    due: Option<Instant>,
}

impl Batch {
    fn touch(&mut self, options: &KubeOptions) {
        let now = Instant::now();
        let first = *self.first.get_or_insert(now);
        self.due = Some((now + options.debounce).min(first + options.max_delay));
    }
}

async fn watch_loop(client: Client, tx: ReadingSender, options: KubeOptions, ready: watch::Sender<bool>) {
    let resources = Resource::all();
    let mut events = watch_all(&client, &resources);
    let mut kinds: Vec<Watched> =
        resources.into_iter().map(|r| Watched { cache: KindCache::new(r), reporter: Reporter::default() }).collect();
    let mut batch = Batch::default();
    loop {
        let listed = kinds.iter().all(|k| k.cache.listing() != Listing::Pending);
        let due = batch.due.filter(|_| listed);
        tokio::select! {
            event = events.next() => {
                let Some((i, event)) = event else { return };
                if kinds[i].handle(event) {
                    batch.touch(&options);
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                // Built once the channel has room, so it holds every change made meanwhile.
                let Ok(permit) = tx.reserve().await else { return };
                permit.send(reading(&kinds));
                batch = Batch::default();
                if !*ready.borrow() {
                    log_ready(&kinds);
                    ready.send_replace(true);
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// Everything the caches hold, in kind order.
fn reading(kinds: &[Watched]) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for kind in kinds {
        kind.cache.extend_reading(&mut out);
    }
    out
}

fn log_ready(kinds: &[Watched]) {
    let objects: usize = kinds.iter().map(|k| k.cache.len()).sum();
    let unavailable: Vec<String> = kinds
        .iter()
        .filter(|k| k.cache.listing() == Listing::Unavailable)
        .map(|k| k.cache.resource.kind.to_string())
        .collect();
    if unavailable.is_empty() {
        tracing::info!(objects, "Kubernetes source ready: every kind listed");
    } else {
        tracing::info!(objects, "Kubernetes source ready; counted as empty: {}", unavailable.join(", "));
    }
}
