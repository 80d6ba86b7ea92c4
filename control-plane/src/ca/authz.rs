//! Who the caller is and which identity it may have, in the control plane's current
//! configuration and only in our trust domain. Pure: a claim and a [`Snapshot`] in, a decision
//! out.
//!
//! - A node proxy ([`Caller::Node`]) may get the identity of a pod scheduled on its node, as
//!   Istio's node authorizer (`security/pkg/server/ca/node_auth.go`).
//! - A waypoint ([`Caller::Waypoint`], [`super::waypoint`]) may get only its own service
//!   account's identity, as an Istio waypoint that asks istiod with its own token.

use std::collections::BTreeSet;

use ambit_common::{
    config::{Snapshot, model::Pod},
    identity::SpiffeId,
};

use super::{
    authn::Claim,
    waypoint::{self, AuthenticatedWaypoint},
};

/// Who a caller proved it is. Only [`resolve_caller`] makes one: the difference between a node
/// proxy and a waypoint is decided there, once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Node(AuthenticatedNode),
    Waypoint(AuthenticatedWaypoint),
}

impl Caller {
    /// Who asked, as `/ca` and the issuance log show it: a node name, or `waypoint/<ns>/<name>`.
    pub fn requester(&self) -> String {
        match self {
            Caller::Node(node) => node.name().to_owned(),
            Caller::Waypoint(waypoint) => format!("waypoint/{}", waypoint.name()),
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Node(node) => write!(f, "node {node}"),
            Caller::Waypoint(waypoint) => write!(f, "waypoint {}", waypoint.name()),
        }
    }
}

/// The node a caller proved it is. Only [`resolve_caller`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedNode(String);

impl AuthenticatedNode {
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AuthenticatedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An identity the CA may sign. Only [`authorize`] (for a caller) and [`Self::control_plane`]
/// (the CA's own serving certificate) make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizedIdentity {
    id: SpiffeId,
    /// Who asked: a node name, `waypoint/<ns>/<name>`, or `control-plane`.
    requester: String,
}

impl AuthorizedIdentity {
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    pub fn requester(&self) -> &str {
        &self.requester
    }

    /// The control plane's own identity, issued in-process.
    pub(super) fn control_plane(id: SpiffeId) -> Self {
        Self { id, requester: "control-plane".to_owned() }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthzError {
    #[error(
        "the control plane has not read its configuration yet, so it cannot tell which pods run where: retry shortly"
    )]
    NotReady,
    #[error(
        "{identity:?} is not a SPIFFE id of the form spiffe://<trust domain>/ns/<namespace>/sa/<service account>: {reason}"
    )]
    InvalidIdentity { identity: String, reason: String },
    #[error("{identity} is in trust domain {asked:?}, but this CA signs only for {ours:?}")]
    TrustDomain { identity: String, asked: String, ours: String },
    #[error("node {node} asked for {identity}, but {why}")]
    NotOnNode { node: String, identity: String, why: String },
    #[error(
        "the token is bound to pod {namespace}/{name}, which the control plane does not know{uid_note}: \
         is the pod being created, or was it deleted?"
    )]
    UnknownBoundPod { namespace: String, name: String, uid_note: String },
    #[error("the token is bound to pod {namespace}/{name}, which is not scheduled to a node yet")]
    BoundPodUnscheduled { namespace: String, name: String },
    #[error(
        "the token of service account {namespace}/{service_account} is bound to pod {namespace}/{pod}, which \
         is not a waypoint's: {why}; only the node proxy's service account and waypoints may call the control plane"
    )]
    NotAWaypoint { namespace: String, pod: String, service_account: String, why: String },
    #[error(
        "waypoint {waypoint} asked for {identity}, but a waypoint may have only its own service account's \
         identity, {own}"
    )]
    NotOwnIdentity { waypoint: String, identity: String, own: String },
    #[error("waypoint {waypoint} asked for {identity}, but its own service account cannot be established: {why}")]
    WaypointServiceAccount { waypoint: String, identity: String, why: String },
}

/// The caller: the node or waypoint its credential names, the node its bound pod runs on (the
/// node proxy's pod), or the waypoint its bound pod belongs to (another service account's pod).
pub fn resolve_caller(claim: Claim, snapshot: &Snapshot) -> Result<Caller, AuthzError> {
    match claim {
        Claim::Node(node) => Ok(Caller::Node(AuthenticatedNode(node))),
        Claim::BoundPod { namespace, name, uid } => node_of_pod(namespace, name, uid, snapshot).map(Caller::Node),
        Claim::Waypoint(name) => Ok(Caller::Waypoint(AuthenticatedWaypoint::by_entry(name))),
        Claim::WorkloadPod { namespace, name, uid, service_account } => {
            let pod = find_bound_pod(&namespace, &name, uid.as_deref(), snapshot)?;
            waypoint::of_pod(pod, service_account, snapshot).map(Caller::Waypoint)
        }
    }
}

/// The pod a token is bound to, in the configuration (with its uid, when the token names one).
pub(super) fn find_bound_pod<'s>(
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    snapshot: &'s Snapshot,
) -> Result<&'s Pod, AuthzError> {
    if snapshot.version() == 0 {
        return Err(AuthzError::NotReady);
    }
    let pod = snapshot
        .pods()
        .find(|p| p.meta.namespace == namespace && p.meta.name == name && (uid.is_none() || p.uid.as_deref() == uid));
    pod.ok_or_else(|| AuthzError::UnknownBoundPod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid_note: uid.map(|u| format!(" with uid {u}")).unwrap_or_default(),
    })
}

fn node_of_pod(
    namespace: String,
    name: String,
    uid: Option<String>,
    snapshot: &Snapshot,
) -> Result<AuthenticatedNode, AuthzError> {
    let pod = find_bound_pod(&namespace, &name, uid.as_deref(), snapshot)?;
    match &pod.node_name {
        Some(node) => Ok(AuthenticatedNode(node.clone())),
        None => Err(AuthzError::BoundPodUnscheduled { namespace, name }),
    }
}

/// Whether `caller` may have `identity`: it must parse and be in `trust_domain`; then a node
/// needs a pod with that identity on it, and a waypoint must be asking for its own.
pub fn authorize(
    caller: &Caller,
    identity: &str,
    trust_domain: &str,
    snapshot: &Snapshot,
) -> Result<AuthorizedIdentity, AuthzError> {
    let id: SpiffeId = identity.parse().map_err(|e: ambit_common::identity::IdentityError| {
        AuthzError::InvalidIdentity { identity: identity.to_owned(), reason: e.to_string() }
    })?;
    if id.trust_domain() != trust_domain {
        return Err(AuthzError::TrustDomain {
            identity: id.to_string(),
            asked: id.trust_domain().to_owned(),
            ours: trust_domain.to_owned(),
        });
    }
    if snapshot.version() == 0 {
        return Err(AuthzError::NotReady);
    }
    let node = match caller {
        Caller::Node(node) => node,
        Caller::Waypoint(w) => {
            waypoint::authorize(w, &id, snapshot)?;
            return Ok(AuthorizedIdentity { id, requester: caller.requester() });
        }
    };
    let with_identity: Vec<&Pod> = snapshot
        .pods()
        .filter(|p| p.meta.namespace == id.namespace() && p.service_account == id.service_account())
        .collect();
    if with_identity.iter().any(|p| p.node_name.as_deref() == Some(node.name())) {
        return Ok(AuthorizedIdentity { id, requester: node.name().to_owned() });
    }
    let nodes: BTreeSet<&str> = with_identity.iter().filter_map(|p| p.node_name.as_deref()).collect();
    let why = if nodes.is_empty() && with_identity.is_empty() {
        format!("no pod in namespace {} has service account {}", id.namespace(), id.service_account())
    } else if nodes.is_empty() {
        format!("the pods with that service account are not scheduled to a node yet (and none runs on {node})")
    } else {
        let list = nodes.into_iter().collect::<Vec<_>>().join(", ");
        format!("no pod with that service account runs on {node}; pods with it run on {list}")
    };
    Err(AuthzError::NotOnNode { node: node.name().to_owned(), identity: id.to_string(), why })
}
