//! The destination's side of waypoints: a (workload, port) bound to a waypoint accepts traffic
//! only from that waypoint, so that a client cannot skip the waypoint's L7 policy by connecting
//! to the pod directly.
//!
//! A (workload, target port) is bound when the workload's own `waypoint` is set (every port), or
//! when a service with a `waypoint` has the workload as an endpoint and maps one of its ports to
//! this target port. Traffic to it is accepted only over HBONE from the identity of an instance
//! of (one of) the bound waypoint(s); everything else — plaintext, other identities — is refused.
//! What the waypoint forwards then goes through the usual L4 authorization, where the control
//! plane's implicit "allow from the waypoint" policy admits it next to ALLOW policies.
//!
//! The bindings are computed once per configuration (`mesh.rs` walks the services); this module
//! holds them and decides.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
};

use ambit_common::api::v1::Workload;

use super::ConnectionAttrs;

/// Which (workload, port)s are bound to which waypoints, and who those waypoints are.
#[derive(Debug, Default)]
pub(crate) struct WaypointBindings {
    /// By workload uid.
    workloads: HashMap<String, Bound>,
    /// The identities of each waypoint's instances: (namespace, service account).
    instances: HashMap<String, BTreeSet<(String, String)>>,
}

#[derive(Debug, Default)]
struct Bound {
    /// The workload's own waypoint, for every port.
    every_port: Option<String>,
    /// The waypoints of the services it is an endpoint of, by target port.
    ports: HashMap<u16, BTreeSet<String>>,
}

impl WaypointBindings {
    /// Every port of workload `uid` goes through `waypoint` (its own binding).
    pub(crate) fn bind_workload(&mut self, uid: &str, waypoint: &str) {
        self.workloads.entry(uid.to_owned()).or_default().every_port = Some(waypoint.to_owned());
    }

    /// Target port `port` of workload `uid` serves a service bound to `waypoint`.
    pub(crate) fn bind_port(&mut self, uid: &str, port: u16, waypoint: &str) {
        let bound = self.workloads.entry(uid.to_owned()).or_default();
        bound.ports.entry(port).or_default().insert(waypoint.to_owned());
    }

    /// An instance of `waypoint` runs as `namespace`/`service_account`.
    pub(crate) fn add_instance(&mut self, waypoint: &str, namespace: &str, service_account: &str) {
        let identity = (namespace.to_owned(), service_account.to_owned());
        self.instances.entry(waypoint.to_owned()).or_default().insert(identity);
    }

    /// The waypoints traffic to target port `port` of workload `uid` must come through, sorted;
    /// empty when it is not bound.
    pub(crate) fn bound(&self, uid: &str, port: u16) -> Vec<&str> {
        let Some(bound) = self.workloads.get(uid) else { return Vec::new() };
        let via_services = bound.ports.get(&port).into_iter().flatten();
        let all: BTreeSet<&str> = bound.every_port.iter().chain(via_services).map(String::as_str).collect();
        all.into_iter().collect()
    }

    /// Whether a connection to `workload` (uid `uid`) may come in from its peer: always when
    /// the target port is not bound; otherwise only from an instance of a bound waypoint in
    /// `trust_domain`.
    pub(crate) fn check(
        &self,
        uid: &str,
        workload: &Workload,
        attrs: &ConnectionAttrs,
        trust_domain: &str,
    ) -> Result<(), BypassedWaypoint> {
        let bound = self.bound(uid, attrs.destination_port);
        if bound.is_empty() {
            return Ok(());
        }
        let peer = attrs.source_principal.as_deref().and_then(parse_principal);
        let from_waypoint = peer.is_some_and(|(td, ns, sa)| {
            td == trust_domain
                && bound
                    .iter()
                    .any(|w| self.instances.get(*w).is_some_and(|ids| ids.iter().any(|(n, s)| n == ns && s == sa)))
        });
        if from_waypoint {
            return Ok(());
        }
        Err(BypassedWaypoint {
            workload: format!("{}/{}", workload.namespace, workload.name),
            port: attrs.destination_port,
            waypoints: bound.into_iter().map(str::to_owned).collect(),
            from: match &attrs.source_principal {
                Some(principal) => format!("spiffe://{principal}"),
                None => format!("plaintext from {}, no identity", attrs.source_ip),
            },
        })
    }
}

/// `<trust domain>/ns/<ns>/sa/<sa>` as its three parts.
fn parse_principal(principal: &str) -> Option<(&str, &str, &str)> {
    let mut parts = principal.split('/');
    let (td, ns_tag, ns, sa_tag, sa) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (ns_tag == "ns" && sa_tag == "sa" && parts.next().is_none()).then_some((td, ns, sa))
}

/// A connection to a waypoint-bound (workload, port) that did not come from the waypoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) struct BypassedWaypoint {
    /// `<namespace>/<name>` of the destination workload.
    pub(crate) workload: String,
    pub(crate) port: u16,
    /// The waypoints it is bound to, sorted (never empty).
    pub(crate) waypoints: Vec<String>,
    /// The peer: its SPIFFE id, or its address when plaintext.
    pub(crate) from: String,
}

impl fmt::Display for BypassedWaypoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (noun, pronoun) = if self.waypoints.len() == 1 { ("waypoint", "it") } else { ("waypoints", "them") };
        write!(
            f,
            "{} port {} is bound to {noun} {}: only traffic through {pronoun} is accepted (from {})",
            self.workload,
            self.port,
            self.waypoints.join(", "),
            self.from
        )
    }
}
