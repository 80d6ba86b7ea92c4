//! Waypoints as callers of Discovery and the CA. As in Istio, a waypoint proves it is itself
//! (not a node proxy) and may be signed only its own service account's identity.
//!
//! - Local mode: its entry `waypoint/<namespace>/<gateway name>` in the node credentials proves
//!   the waypoint; its service account is that of its pods (labelled with the gateway name) in
//!   the configuration, which must agree.
//! - Kubernetes: its pod's projected token, TokenReview'd; the bound pod must be in the
//!   configuration, labelled `gateway.networking.k8s.io/gateway-name: <name>`, and Gateway
//!   `<namespace>/<name>` must be a waypoint. Its service account is the token's.

use std::collections::BTreeSet;

use ambit_common::{
    config::{Snapshot, model::Pod},
    identity::SpiffeId,
};

use super::{authn::WaypointName, authz::AuthzError};

// The label Gateway API (and Istio) put on a Gateway's pods: the Gateway's name. One constant
// with the binding rules, so the CA and the compile never disagree on who a waypoint's pods are.
use crate::compile::binding::GATEWAY_NAME as GATEWAY_NAME_LABEL;

/// A waypoint a caller proved it is. Only [`super::authz::resolve_caller`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedWaypoint {
    name: WaypointName,
    proof: Proof,
}

/// How the waypoint was proven, which decides where its service account comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Proof {
    /// Local mode: its entry in the credentials file (the service account is its pods').
    Entry,
    /// Kubernetes: a token of `service_account` bound to this waypoint pod.
    Pod { service_account: String },
}

impl AuthenticatedWaypoint {
    pub fn name(&self) -> &WaypointName {
        &self.name
    }

    pub(super) fn by_entry(name: WaypointName) -> Self {
        Self { name, proof: Proof::Entry }
    }
}

/// The waypoint whose pod `pod` is (the caller's token, of `service_account`, is bound to it).
pub(super) fn of_pod(
    pod: &Pod,
    service_account: String,
    snapshot: &Snapshot,
) -> Result<AuthenticatedWaypoint, AuthzError> {
    let namespace = &pod.meta.namespace;
    let not_a_waypoint = |why: String| AuthzError::NotAWaypoint {
        namespace: namespace.clone(),
        pod: pod.meta.name.clone(),
        service_account: service_account.clone(),
        why,
    };
    let Some(gateway_name) = pod.meta.labels.get(GATEWAY_NAME_LABEL) else {
        return Err(not_a_waypoint(format!("it has no {GATEWAY_NAME_LABEL} label")));
    };
    let gateway = snapshot.gateways().find(|g| &g.meta.namespace == namespace && &g.meta.name == gateway_name);
    match gateway {
        None => Err(not_a_waypoint(format!(
            "its Gateway {namespace}/{gateway_name} is not in the configuration (was it deleted?)"
        ))),
        Some(g) if !g.is_waypoint() => Err(not_a_waypoint(format!(
            "its Gateway {namespace}/{gateway_name} is of class {:?}, not {:?}",
            g.class_name,
            ambit_common::config::model::Gateway::WAYPOINT_CLASS
        ))),
        Some(_) => Ok(AuthenticatedWaypoint {
            name: WaypointName { namespace: namespace.clone(), name: gateway_name.clone() },
            proof: Proof::Pod { service_account },
        }),
    }
}

/// Whether `waypoint` may have `id` (already checked to be in our trust domain): only its own
/// service account's identity.
pub(super) fn authorize(
    waypoint: &AuthenticatedWaypoint,
    id: &SpiffeId,
    snapshot: &Snapshot,
) -> Result<(), AuthzError> {
    let own = match &waypoint.proof {
        Proof::Pod { service_account } => service_account.clone(),
        Proof::Entry => service_account_of_pods(&waypoint.name, snapshot).map_err(|why| {
            AuthzError::WaypointServiceAccount { waypoint: waypoint.name.to_string(), identity: id.to_string(), why }
        })?,
    };
    if id.namespace() == waypoint.name.namespace && id.service_account() == own {
        return Ok(());
    }
    Err(AuthzError::NotOwnIdentity {
        waypoint: waypoint.name.to_string(),
        identity: id.to_string(),
        own: format!("spiffe://{}/ns/{}/sa/{own}", id.trust_domain(), waypoint.name.namespace),
    })
}

/// The one service account the waypoint's pods run as, or why there is not one.
fn service_account_of_pods(waypoint: &WaypointName, snapshot: &Snapshot) -> Result<String, String> {
    let accounts: BTreeSet<&str> = snapshot
        .pods()
        .filter(|p| {
            p.meta.namespace == waypoint.namespace
                && p.meta.labels.get(GATEWAY_NAME_LABEL).is_some_and(|g| *g == waypoint.name)
        })
        .map(|p| p.service_account.as_str())
        .collect();
    let mut iter = accounts.iter();
    match (iter.next(), iter.next()) {
        (Some(only), None) => Ok((*only).to_owned()),
        (None, _) => Err(format!(
            "no pod in namespace {} is labelled {GATEWAY_NAME_LABEL}: {} (is the waypoint deployed, and its pods \
             in the configuration?)",
            waypoint.namespace, waypoint.name
        )),
        (Some(_), Some(_)) => Err(format!(
            "its pods run as different service accounts ({}): give every pod of the waypoint the same one",
            accounts.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
