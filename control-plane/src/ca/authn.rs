//! Who is calling: the bearer token in the `authorization` metadata, checked against the node
//! credentials file (local mode, [`super::credentials`]) or with a TokenReview (Kubernetes,
//! [`super::kubernetes`]). The result is a [`Claim`]: a node proxy or a waypoint (local mode),
//! or a pod-bound token whose meaning needs the configuration ([`super::authz::resolve_caller`]:
//! the node its pod runs on, or the waypoint its pod belongs to).

use tonic::metadata::MetadataMap;

use super::{credentials::NodeCredentials, kubernetes::TokenReviewer};

/// What a verified credential says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The holder is this node's proxy (a node token, or the node proxy's service-account token
    /// whose `authentication.kubernetes.io/node-name` extra names the node).
    Node(String),
    /// The node proxy's service-account token bound to its pod: the node is wherever that pod
    /// is scheduled.
    BoundPod { namespace: String, name: String, uid: Option<String> },
    /// Local mode: the holder is this waypoint (its `waypoint/<namespace>/<name>` entry).
    Waypoint(WaypointName),
    /// Kubernetes: another service account's token bound to a pod. Not refused here: it is a
    /// waypoint if its pod is a waypoint's, which only the configuration can tell.
    WorkloadPod { namespace: String, name: String, uid: Option<String>, service_account: String },
}

/// A waypoint: the Gateway (class `istio-waypoint`) `namespace/name` it is deployed for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaypointName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WaypointName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How callers prove who they are.
pub enum Authenticator {
    /// Local mode: a token per node and per waypoint, from a file.
    NodeTokens(NodeCredentials),
    /// Kubernetes: projected service-account tokens (the node proxy's, a waypoint pod's),
    /// verified with TokenReview.
    TokenReview(Box<TokenReviewer>),
    /// Local mode without `--node-credentials`: nobody can prove a node; every request is refused.
    Nobody,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("no credential: send the node's or waypoint's token as gRPC metadata `authorization: Bearer <token>`")]
    Missing,
    #[error("the `authorization` metadata is not `Bearer <token>`")]
    Malformed,
    #[error("the token matches no node or waypoint in {file}: is the proxy given its own token from that file?")]
    UnknownToken { file: String },
    #[error(
        "this control plane has no node credentials (--node-credentials), so no node or waypoint \
         can prove who it is: start it with --node-credentials <file> (a map node name or \
         waypoint/<namespace>/<gateway name> → token)"
    )]
    NoCredentialsConfigured,
    #[error("the token was not accepted by the Kubernetes API server{}", error_suffix(.0))]
    Rejected(String),
    #[error(
        "the token is valid for audiences {audiences:?}, not {wanted:?}: project the node proxy's \
         token with `audience: {wanted}`"
    )]
    WrongAudience { audiences: Vec<String>, wanted: String },
    #[error(
        "the token belongs to {user}, but only the node proxy's service account {expected} and \
         waypoints (with a pod-bound projected token) may call the control plane"
    )]
    WrongServiceAccount { user: String, expected: String },
    #[error(
        "the token of {user} is not bound to a pod or node: give the node proxy a projected \
         service-account token (serviceAccountToken volume, audience {audience})"
    )]
    NotBound { user: String, audience: String },
    #[error("could not verify the token with a TokenReview: {0}")]
    ReviewFailed(String),
}

fn error_suffix(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(": {reason}") }
}

impl Authenticator {
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Claim, AuthnError> {
        let token = bearer_token(metadata)?;
        match self {
            Authenticator::NodeTokens(credentials) => credentials.holder_of(token).map(Claim::from),
            Authenticator::TokenReview(reviewer) => reviewer.review(token).await,
            Authenticator::Nobody => Err(AuthnError::NoCredentialsConfigured),
        }
    }
}

/// The token of `authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, AuthnError> {
    let value = metadata.get("authorization").ok_or(AuthnError::Missing)?;
    let value = value.to_str().map_err(|_| AuthnError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthnError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthnError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn bearer_tokens_are_read_and_other_schemes_refused() {
        assert_eq!(bearer_token(&metadata("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&metadata("bearer  abc ")).unwrap(), "abc");
        assert!(matches!(bearer_token(&metadata("Basic abc")), Err(AuthnError::Malformed)));
        assert!(matches!(bearer_token(&metadata("Bearer ")), Err(AuthnError::Malformed)));
        assert!(matches!(bearer_token(&MetadataMap::new()), Err(AuthnError::Missing)));
    }
}
