//! What can go wrong with identities, certificates and their verification. Each message says
//! what is wrong and what to look at.

use std::time::SystemTime;

use super::SpiffeId;

#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error(
        "invalid SPIFFE id {id:?}: {reason}; Ambit identities look like \
         spiffe://<trust domain>/ns/<namespace>/sa/<service account>"
    )]
    InvalidSpiffeId { id: String, reason: &'static str },

    #[error("invalid trust domain {trust_domain:?}: it {reason}; the default is cluster.local")]
    InvalidTrustDomain { trust_domain: String, reason: &'static str },

    #[error("could not read the {what} PEM: {reason}")]
    InvalidPem { what: &'static str, reason: String },

    #[error("the {what} PEM holds no {expected}: {hint}")]
    EmptyPem { what: &'static str, expected: &'static str, hint: &'static str },

    #[error("could not parse the {what} certificate: {reason}")]
    InvalidCertificate { what: &'static str, reason: String },

    #[error(
        "the private key is not usable ({reason}): Ambit workload keys are ECDSA P-256 \
         (PKCS#8 or SEC1 PEM)"
    )]
    InvalidKey { reason: String },

    #[error(
        "the private key does not match the leaf certificate's public key: are the key and the \
         certificate from the same issuance?"
    )]
    KeyMismatch,

    #[error(
        "certificate has no SPIFFE URI SAN: Ambit issues \
         spiffe://<td>/ns/<ns>/sa/<sa> identities; is this certificate from the mesh CA?"
    )]
    NoSpiffeId,

    #[error(
        "certificate has {} SPIFFE URI SANs ({}): an Ambit workload certificate carries \
         exactly one identity",
        ids.len(), ids.join(", ")
    )]
    SeveralSpiffeIds { ids: Vec<String> },

    #[error(
        "peer identity {id} is outside the trust domain {expected:?} of the trust bundle: a \
         workload of another mesh, or a root shared between meshes?"
    )]
    WrongTrustDomain { id: SpiffeId, expected: String },

    #[error(
        "server presented {presented}, expected {expected}: is the address stale, or now taken \
         by another workload?"
    )]
    UnexpectedIdentity { presented: SpiffeId, expected: SpiffeId },

    #[error(
        "certificate expired at {} (now {}): its holder should have renewed it at half-life; \
         can it reach the CA, and are both clocks right?",
        fmt_time(*not_after), fmt_time(*now)
    )]
    Expired { not_after: SystemTime, now: SystemTime },

    #[error(
        "certificate is not valid before {} (now {}): is a clock behind?",
        fmt_time(*not_before), fmt_time(*now)
    )]
    NotYetValid { not_before: SystemTime, now: SystemTime },

    #[error(
        "certificate chain does not lead to a root of the mesh trust bundle ({reason}): is it \
         self-signed, from another CA, or missing its intermediates, or is this side's trust \
         bundle out of date?"
    )]
    UntrustedChain { reason: webpki::Error },

    #[error(
        "certificate is not valid for TLS {usage} authentication (its extended key usage lacks \
         it): Ambit workload certificates carry both serverAuth and clientAuth"
    )]
    WrongKeyUsage { usage: &'static str },

    #[error("certificate chain is invalid ({reason})")]
    InvalidChain { reason: webpki::Error },

    #[error(
        "the trust bundle's roots name different trust domains ({first} and {second}): a \
         bundle serves one mesh"
    )]
    ConflictingTrustDomains { first: String, second: String },

    #[error("could not {action}: {reason}")]
    Rcgen { action: &'static str, reason: rcgen::Error },

    #[error("could not connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
}

fn fmt_time(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => match time::OffsetDateTime::from_unix_timestamp(d.as_secs().try_into().unwrap_or(i64::MAX)) {
            Ok(t) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            Err(_) => format!("unix {}s", d.as_secs()),
        },
        Err(_) => "before 1970".to_owned(),
    }
}

/// The message: rustls shows a verifier's error with `{:?}` ("invalid peer certificate:
/// Other(OtherError(<this>))"), and that should read as a sentence in logs.
impl std::fmt::Debug for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl IdentityError {
    /// As a rustls error, so a failed verification surfaces in the handshake error with this
    /// message (`InvalidCertificate(Other(..))`; the peer receives a `bad_certificate` alert).
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            self,
        ))))
    }

    /// Why our verifier refused the peer, from a rustls error.
    pub fn from_rustls(e: &rustls::Error) -> Option<&Self> {
        match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => other.0.downcast_ref(),
            _ => None,
        }
    }

    /// Why our verifier refused the peer, from a failed handshake's `io::Error` (tokio-rustls
    /// wraps the rustls error in one).
    pub fn from_handshake_error(e: &std::io::Error) -> Option<&Self> {
        Self::from_rustls(e.get_ref()?.downcast_ref()?)
    }
}
