//! The `ambit.v1.CertificateAuthority` gRPC service, and the one place where refusals become
//! gRPC statuses and metric reasons ([`Refusal`]).

use std::sync::Arc;

use ambit_common::api::v1::{SignRequest, SignResponse, certificate_authority_server::CertificateAuthority};
use tonic::{Code, Request, Response, Status};

use super::{Ca, authn::AuthnError, authz::AuthzError, sign::SignError, stats::RefusalReason};

/// Why the CA did not sign.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl Refusal {
    /// The gRPC code and the metric reason. Exhaustive: a new error variant must be classified.
    pub fn classify(&self) -> (Code, RefusalReason) {
        use RefusalReason as R;
        match self {
            Refusal::Authn(e) => match e {
                AuthnError::Missing
                | AuthnError::Malformed
                | AuthnError::UnknownToken { .. }
                | AuthnError::NoCredentialsConfigured
                | AuthnError::Rejected(_)
                | AuthnError::WrongAudience { .. }
                | AuthnError::NotBound { .. } => (Code::Unauthenticated, R::Unauthenticated),
                AuthnError::WrongServiceAccount { .. } => (Code::PermissionDenied, R::NotANodeProxy),
                AuthnError::ReviewFailed(_) => (Code::Unavailable, R::Unavailable),
            },
            Refusal::Authz(e) => match e {
                AuthzError::NotReady => (Code::Unavailable, R::Unavailable),
                AuthzError::InvalidIdentity { .. } => (Code::InvalidArgument, R::InvalidRequest),
                AuthzError::TrustDomain { .. } => (Code::PermissionDenied, R::TrustDomain),
                AuthzError::NotOnNode { .. } => (Code::PermissionDenied, R::NotOnNode),
                // The token is genuine but its node cannot be established.
                AuthzError::UnknownBoundPod { .. } | AuthzError::BoundPodUnscheduled { .. } => {
                    (Code::Unauthenticated, R::Unauthenticated)
                }
                // A genuine workload token, but its pod is no waypoint's: it may not ask at all.
                AuthzError::NotAWaypoint { .. } => (Code::PermissionDenied, R::NotANodeProxy),
                AuthzError::NotOwnIdentity { .. } | AuthzError::WaypointServiceAccount { .. } => {
                    (Code::PermissionDenied, R::NotOwnIdentity)
                }
            },
            Refusal::Sign(e) => match e {
                SignError::Csr(_) => (Code::InvalidArgument, R::InvalidRequest),
                SignError::Sign { .. } => (Code::Internal, R::Internal),
            },
        }
    }

    pub fn to_status(&self) -> Status {
        Status::new(self.classify().0, self.to_string())
    }
}

/// The generated server's implementation: [`Ca::sign`] plus logging and counting.
#[derive(Clone)]
pub struct CaService {
    ca: Arc<Ca>,
}

impl CaService {
    pub fn new(ca: Arc<Ca>) -> Self {
        Self { ca }
    }
}

#[tonic::async_trait]
impl CertificateAuthority for CaService {
    async fn sign(&self, request: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let peer = request.remote_addr();
        match self.ca.sign(request.metadata(), request.get_ref()).await {
            Ok(response) => Ok(Response::new(response)),
            Err(refusal) => {
                let (code, reason) = refusal.classify();
                self.ca.stats.refused(reason);
                tracing::warn!(
                    ?peer,
                    identity = %request.get_ref().identity,
                    reason = reason.as_str(),
                    "certificate request refused ({code:?}): {refusal}"
                );
                Err(refusal.to_status())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example per reason: every metric label is reachable.
    #[test]
    fn every_reason_is_reachable() {
        let examples: Vec<Refusal> = vec![
            AuthnError::Missing.into(),
            AuthnError::WrongServiceAccount { user: "u".into(), expected: "e".into() }.into(),
            AuthzError::NotOnNode { node: "n".into(), identity: "i".into(), why: "w".into() }.into(),
            AuthzError::NotOwnIdentity { waypoint: "w".into(), identity: "i".into(), own: "o".into() }.into(),
            AuthzError::TrustDomain { identity: "i".into(), asked: "a".into(), ours: "o".into() }.into(),
            AuthzError::InvalidIdentity { identity: "i".into(), reason: "r".into() }.into(),
            AuthzError::NotReady.into(),
            SignError::Sign { identity: "i".into(), reason: rcgen::Error::CouldNotParseCertificate }.into(),
        ];
        let reached: Vec<RefusalReason> = examples.iter().map(|r| r.classify().1).collect();
        for reason in RefusalReason::ALL {
            assert!(reached.contains(&reason), "{reason:?} is never produced");
        }
    }
}
