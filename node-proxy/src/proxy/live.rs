//! Inbound connections in progress, with what authorization saw, so that a policy change can
//! close the ones it now denies (Istio closes them too). Registered for the life of the relay.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use ambit_common::relay::{Duplex, relay_until};
use tokio::sync::oneshot;

use crate::{
    mesh::Mesh,
    policy::{ConnectionAttrs, Decision, DenyReason},
    records::Closing,
};

struct Live {
    workload_uid: String,
    attrs: ConnectionAttrs,
    revoke: Option<oneshot::Sender<DenyReason>>,
}

#[derive(Default)]
pub(crate) struct LiveConnections {
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Live>>,
}

/// Unregisters the connection when dropped.
pub(crate) struct LiveGuard<'a> {
    live: &'a LiveConnections,
    id: u64,
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.live.entries.lock().expect("live lock").remove(&self.id);
    }
}

impl LiveConnections {
    /// Relays `source` ⇄ `app` for a connection to local workload `workload_uid` until either
    /// side ends it or a policy change denies it; the record of a revoked connection names the
    /// policy that now denies it.
    pub(crate) async fn relay<S: Duplex, A: Duplex>(
        &self,
        workload_uid: &str,
        attrs: ConnectionAttrs,
        source: S,
        app: A,
    ) -> Closing {
        let (_registration, revoked) = self.register(workload_uid, attrs);
        let mut reason = None;
        let relayed = relay_until(source, app, async {
            match revoked.await {
                Ok(why) => reason = Some(why),
                // The sender lives as long as the registration: never cancelled.
                Err(_) => std::future::pending().await,
            }
        })
        .await;
        let mut closing = Closing::from(relayed);
        if let Some(why) = reason {
            closing.error = Some(format!("a policy change now denies this connection: {why}"));
        }
        closing
    }

    /// Registers a connection to local workload `workload_uid`; the receiver completes, with
    /// the reason, if a policy change revokes it.
    fn register(&self, workload_uid: &str, attrs: ConnectionAttrs) -> (LiveGuard<'_>, oneshot::Receiver<DenyReason>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (revoke, revoked) = oneshot::channel();
        let entry = Live { workload_uid: workload_uid.to_owned(), attrs, revoke: Some(revoke) };
        self.entries.lock().expect("live lock").insert(id, entry);
        (LiveGuard { live: self, id }, revoked)
    }

    /// Re-runs authorization for every live connection under `mesh`; revokes the denied ones.
    /// A workload that left the configuration keeps its connections (its policies are unknown,
    /// not denying).
    pub(crate) fn reauthorize(&self, mesh: &Mesh) -> usize {
        let mut revoked = 0;
        let mut entries = self.entries.lock().expect("live lock");
        for live in entries.values_mut() {
            let Some(workload) = mesh.workload_by_uid(&live.workload_uid) else { continue };
            let Decision::Deny { by } = mesh.policies.authorize(&workload.workload, &live.attrs) else { continue };
            if let Some(revoke) = live.revoke.take() {
                tracing::info!(source = %live.attrs.source_ip, destination_port = live.attrs.destination_port,
                    reason = %by, "closing a live connection a new policy denies");
                let _ = revoke.send(by);
                revoked += 1;
            }
        }
        revoked
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().expect("live lock").len()
    }
}
