//! Kubernetes authentication of node proxies and waypoints: their projected service-account
//! token, checked with a TokenReview (`authentication.k8s.io/v1`) for our audience.
//!
//! - The node proxy's service account: its node comes from the token's extra
//!   `authentication.kubernetes.io/node-name` (set for pod-bound tokens since Kubernetes 1.32),
//!   else from the bound pod (`…/pod-name`, `…/pod-uid`) looked up in the configuration
//!   ([`super::authz::resolve_caller`]). This mirrors how Istio authenticates ztunnel
//!   (`security/pkg/server/ca/authenticate/kubeauth`).
//! - Any other service account: only a token bound to a pod is accepted, as a
//!   [`Claim::WorkloadPod`]; authorization decides whether the pod is a waypoint's
//!   ([`super::waypoint`]). Its node-name extra means nothing here: a workload proves no node.

use std::{fmt, str::FromStr};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::{Api, Client, api::PostParams};
use serde::Serialize;

use super::authn::{AuthnError, Claim};

/// The default audience node proxies project their tokens for.
pub const DEFAULT_AUDIENCE: &str = "ambit-ca";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";

/// `namespace/name` of a service account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name the API server gives its tokens.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl From<ServiceAccountRef> for String {
    fn from(sa: ServiceAccountRef) -> String {
        sa.to_string()
    }
}

impl FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| format!("{s:?} is not <namespace>/<name>"))?;
        ambit_common::names::check_dns_label(namespace).map_err(|m| format!("namespace {namespace:?} {m}"))?;
        ambit_common::names::check_dns_subdomain(name).map_err(|m| format!("name {name:?} {m}"))?;
        Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

/// `(namespace, name)` of a service account's user name `system:serviceaccount:<ns>:<name>`.
fn service_account_of(username: &str) -> Option<(String, String)> {
    let (namespace, name) = username.strip_prefix("system:serviceaccount:")?.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty()).then(|| (namespace.to_owned(), name.to_owned()))
}

/// Verifies tokens with the API server.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audience: String,
    node_proxy: ServiceAccountRef,
}

impl TokenReviewer {
    pub fn new(client: Client, audience: String, node_proxy: ServiceAccountRef) -> Self {
        Self { api: Api::all(client), audience, node_proxy }
    }

    pub async fn review(&self, token: &str) -> Result<Claim, AuthnError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), audiences: Some(vec![self.audience.clone()]) },
            ..Default::default()
        };
        let reviewed = self.api.create(&PostParams::default(), &review).await.map_err(|e| {
            let hint = match &e {
                kube::Error::Api(s) if s.code == 403 => {
                    " (the control plane's service account needs `create` on tokenreviews.authentication.k8s.io: see deploy/control-plane-rbac.yaml)"
                }
                _ => "",
            };
            AuthnError::ReviewFailed(format!("{e}{hint}"))
        })?;
        self.judge(reviewed.status.unwrap_or_default())
    }

    /// The API server's verdict → a claim, or why not.
    fn judge(&self, status: TokenReviewStatus) -> Result<Claim, AuthnError> {
        if status.authenticated != Some(true) {
            return Err(AuthnError::Rejected(status.error.unwrap_or_default()));
        }
        // An audience-aware API server echoes the audiences the token is valid for among ours.
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.contains(&self.audience) {
            return Err(AuthnError::WrongAudience { audiences, wanted: self.audience.clone() });
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let extra = user.extra.unwrap_or_default();
        let first = |key: &str| extra.get(key).and_then(|v| v.first()).filter(|v| !v.is_empty()).cloned();
        if username != self.node_proxy.username() {
            // Maybe a waypoint: only its pod (in the configuration) can say.
            let wrong =
                || AuthnError::WrongServiceAccount { user: username.clone(), expected: self.node_proxy.to_string() };
            let (namespace, service_account) = service_account_of(&username).ok_or_else(wrong)?;
            let name = first(POD_NAME).ok_or_else(wrong)?;
            return Ok(Claim::WorkloadPod { namespace, name, uid: first(POD_UID), service_account });
        }
        if let Some(node) = first(NODE_NAME) {
            return Ok(Claim::Node(node));
        }
        match first(POD_NAME) {
            Some(name) => {
                Ok(Claim::BoundPod { namespace: self.node_proxy.namespace.clone(), name, uid: first(POD_UID) })
            }
            None => Err(AuthnError::NotBound { user: username, audience: self.audience.clone() }),
        }
    }
}
