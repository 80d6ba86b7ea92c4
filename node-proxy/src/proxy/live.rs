//! Inbound connections in progress, with what authorization saw, so that a policy change can
//! close the ones it now denies (Istio closes them too). Registered for the life of the relay.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::oneshot;

use crate::{mesh::Mesh, policy::ConnectionAttrs};

struct Live {
    workload_uid: String,
    attrs: ConnectionAttrs,
    revoke: Option<oneshot::Sender<()>>,
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
    /// Registers a connection to local workload `workload_uid`; the receiver completes if a
    /// policy change revokes it.
    pub(crate) fn register(
        &self,
        workload_uid: &str,
        attrs: ConnectionAttrs,
    ) -> (LiveGuard<'_>, oneshot::Receiver<()>) {
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
            let decision = mesh.policies.authorize(&workload.workload, &live.attrs);
            if !decision.is_allowed()
                && let Some(revoke) = live.revoke.take()
            {
                tracing::info!(source = %live.attrs.source_ip, destination_port = live.attrs.destination_port,
                    ?decision, "closing a live connection a new policy denies");
                let _ = revoke.send(());
                revoked += 1;
            }
        }
        revoked
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().expect("live lock").len()
    }
}
