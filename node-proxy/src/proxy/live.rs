//! Inbound connections in progress, with what authorization saw, so that a configuration change
//! can close the ones it now denies (Istio closes them too): a policy that now refuses them, or
//! a port newly bound to a waypoint they did not come through. Registered for the life of the
//! relay.

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
    /// side ends it or a configuration change denies it; the record of a revoked connection
    /// says why (the policy, or the waypoint it bypassed).
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
            closing.error = Some(format!("a configuration change now denies this connection: {why}"));
        }
        closing
    }

    /// Registers a connection to local workload `workload_uid`; the receiver completes, with
    /// the reason, if a configuration change revokes it.
    fn register(&self, workload_uid: &str, attrs: ConnectionAttrs) -> (LiveGuard<'_>, oneshot::Receiver<DenyReason>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (revoke, revoked) = oneshot::channel();
        let entry = Live { workload_uid: workload_uid.to_owned(), attrs, revoke: Some(revoke) };
        self.entries.lock().expect("live lock").insert(id, entry);
        (LiveGuard { live: self, id }, revoked)
    }

    /// Re-runs the inbound decision (the waypoint-bound rule, then authorization) for every live
    /// connection under `mesh`, in `trust_domain`; revokes the denied ones. A workload that left
    /// the configuration keeps its connections (its policies are unknown, not denying).
    pub(crate) fn reauthorize(&self, mesh: &Mesh, trust_domain: &str) -> usize {
        let mut revoked = 0;
        let mut entries = self.entries.lock().expect("live lock");
        for live in entries.values_mut() {
            let Some(workload) = mesh.workload_by_uid(&live.workload_uid) else { continue };
            let Decision::Deny { by } = mesh.authorize(workload, &live.attrs, trust_domain) else { continue };
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::mesh::testing::{Res, endpoint, mesh, service, waypoint, workload};

    /// `reviews` serves a service on 9080, bound to waypoint `ns/wp` when `bound`.
    fn cluster(bound: bool) -> Mesh {
        let mut svc = service("reviews", "10.96.0.1", vec![endpoint("reviews", 9080)]);
        if bound {
            svc.waypoint = "ns/wp".into();
        }
        mesh(vec![
            Res::Workload(workload("reviews", "10.1.0.2", true)),
            Res::Workload(workload("wp-1", "10.2.0.2", false)),
            Res::Waypoint(waypoint("wp", &["wp-1"])),
            Res::Service(svc),
        ])
    }

    fn attrs(principal: &str) -> ConnectionAttrs {
        ConnectionAttrs::new("10.1.0.9".parse().unwrap(), Some(principal), SocketAddr::from(([10, 1, 0, 2], 9080)))
    }

    #[test]
    fn binding_a_port_to_a_waypoint_revokes_the_connections_that_went_around_it() {
        let live = LiveConnections::default();
        let (_direct, mut direct) = live.register("reviews", attrs("cluster.local/ns/ns/sa/sa-sleep"));
        let (_through, mut through) = live.register("reviews", attrs("cluster.local/ns/ns/sa/sa-wp-1"));
        assert_eq!(live.reauthorize(&cluster(false), "cluster.local"), 0);
        assert_eq!(live.reauthorize(&cluster(true), "cluster.local"), 1);
        match direct.try_recv() {
            Ok(DenyReason::BypassedWaypoint(e)) => assert_eq!(e.waypoints, ["ns/wp"]),
            other => panic!("{other:?}"),
        }
        assert!(through.try_recv().is_err(), "the waypoint's own connection stays");
        assert_eq!(live.len(), 2, "a registration lasts until its relay ends");
    }
}
