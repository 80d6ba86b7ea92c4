//! Who may have which identity: a node may get the identity of a pod scheduled on it, in the
//! control plane's current configuration, and only in our trust domain. Pure: a claim and a
//! [`Snapshot`] in, a decision out.
//!
//! As Istio's node authorizer (`security/pkg/server/ca/node_auth.go`): the caller's node is
//! authenticated, then the identity must be that of some pod with that service account running
//! on that node.

use std::collections::BTreeSet;

use ambit_common::{
    config::{Snapshot, model::Pod},
    identity::SpiffeId,
};

use super::authn::Claim;

/// The node a caller proved it is. Only [`resolve_node`] makes one.
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

/// An identity the CA may sign. Only [`authorize`] (for a node) and [`Self::control_plane`]
/// (the CA's own serving certificate) make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizedIdentity {
    id: SpiffeId,
    /// Who asked: a node name, or `control-plane`.
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
}

/// The caller's node: named by the credential, or the node its token's bound pod runs on.
pub fn resolve_node(claim: Claim, snapshot: &Snapshot) -> Result<AuthenticatedNode, AuthzError> {
    let (namespace, name, uid) = match claim {
        Claim::Node(node) => return Ok(AuthenticatedNode(node)),
        Claim::BoundPod { namespace, name, uid } => (namespace, name, uid),
    };
    if snapshot.version() == 0 {
        return Err(AuthzError::NotReady);
    }
    let pod = snapshot.pods().find(|p| {
        p.meta.namespace == namespace && p.meta.name == name && (uid.is_none() || p.uid.as_deref() == uid.as_deref())
    });
    let Some(pod) = pod else {
        let uid_note = uid.map(|u| format!(" with uid {u}")).unwrap_or_default();
        return Err(AuthzError::UnknownBoundPod { namespace, name, uid_note });
    };
    match &pod.node_name {
        Some(node) => Ok(AuthenticatedNode(node.clone())),
        None => Err(AuthzError::BoundPodUnscheduled { namespace, name }),
    }
}

/// Whether `node` may have `identity`: it must parse, be in `trust_domain`, and name the
/// namespace and service account of a pod that runs on `node`.
pub fn authorize(
    node: &AuthenticatedNode,
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
