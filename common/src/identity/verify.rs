//! Chain verification with webpki against the mesh roots, then the SPIFFE id check, and the
//! rustls verifiers built on them. Names (DNS, IP) are never checked: a peer is who its single
//! SPIFFE URI SAN says, provided the chain leads to a root of the bundle.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::{IdentityError, SpiffeId, TrustBundle, cert};

/// The SPIFFE id of a verified peer's leaf certificate (`chain[0]`), e.g. from
/// `ServerConnection::peer_certificates()` after the handshake. This does not verify anything:
/// the handshake's verifier did.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Result<SpiffeId, IdentityError> {
    let leaf = chain.first().ok_or(IdentityError::EmptyPem {
        what: "peer's certificate chain",
        expected: "certificate",
        hint: "the peer presented no certificate; was client authentication required?",
    })?;
    cert::parse(leaf, "peer's")?.identity()
}

/// Which side the certificate authenticates.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Usage {
    Server,
    Client,
}

impl Usage {
    fn key_usage(self) -> KeyUsage {
        match self {
            Self::Server => KeyUsage::server_auth(),
            Self::Client => KeyUsage::client_auth(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// Verifies the chain (signatures up to a root of `bundle`, validity at `now`, extended key usage
/// for `usage`) and returns the leaf's single SPIFFE id, which must be in the bundle's trust
/// domain when the bundle knows it.
pub(crate) fn verify_chain(
    bundle: &TrustBundle,
    algorithms: &WebPkiSupportedAlgorithms,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
) -> Result<SpiffeId, IdentityError> {
    let leaf = EndEntityCert::try_from(end_entity).map_err(|reason| IdentityError::InvalidChain { reason })?;
    leaf.verify_for_usage(algorithms.all, bundle.anchors(), intermediates, now, usage.key_usage(), None, None)
        .map_err(|e| chain_error(e, usage))?;
    let id = cert::parse(end_entity, "peer's")?.identity()?;
    match bundle.trust_domain() {
        Some(td) if id.trust_domain() != td => Err(IdentityError::WrongTrustDomain { id, expected: td.to_owned() }),
        _ => Ok(id),
    }
}

fn chain_error(reason: webpki::Error, usage: Usage) -> IdentityError {
    use webpki::Error as E;
    match reason {
        E::CertExpired { time, not_after } => {
            IdentityError::Expired { not_after: system_time(not_after), now: system_time(time) }
        }
        E::CertNotValidYet { time, not_before } => {
            IdentityError::NotYetValid { not_before: system_time(not_before), now: system_time(time) }
        }
        E::RequiredEkuNotFoundContext(_) => IdentityError::WrongKeyUsage { usage: usage.name() },
        E::UnknownIssuer
        | E::CaUsedAsEndEntity
        | E::InvalidSignatureForPublicKey
        | E::EndEntityUsedAsCa
        | E::PathLenConstraintViolated
        | E::NameConstraintViolation => IdentityError::UntrustedChain { reason },
        reason => IdentityError::InvalidChain { reason },
    }
}

fn system_time(t: UnixTime) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs())
}

/// HBONE's client side: the server must chain to the bundle and be exactly `expected`.
#[derive(Debug)]
pub(crate) struct ServerIdentityVerifier {
    bundle: TrustBundle,
    expected: SpiffeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerIdentityVerifier {
    pub(crate) fn new(bundle: TrustBundle, expected: SpiffeId) -> Arc<Self> {
        Arc::new(Self { bundle, expected, algorithms: super::provider().signature_verification_algorithms })
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // Ignored: SPIFFE ids are URI SANs; callers pass the peer IP.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = verify_chain(&self.bundle, &self.algorithms, end_entity, intermediates, now, Usage::Server)
            .map_err(IdentityError::into_rustls)?;
        if presented != self.expected {
            return Err(IdentityError::UnexpectedIdentity { presented, expected: self.expected.clone() }.into_rustls());
        }
        Ok(ServerCertVerified::assertion())
    }

    /// Unused: every Ambit configuration is TLS 1.3 only.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// HBONE's server side: a client certificate is required, must chain to the bundle, be valid for
/// client authentication and carry one SPIFFE id (in the bundle's trust domain when known).
/// Which identities may connect is authorization's business, after the handshake.
#[derive(Debug)]
pub(crate) struct ClientIdentityVerifier {
    bundle: TrustBundle,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientIdentityVerifier {
    pub(crate) fn new(bundle: TrustBundle) -> Arc<Self> {
        Arc::new(Self { bundle, algorithms: super::provider().signature_verification_algorithms })
    }
}

impl ClientCertVerifier for ClientIdentityVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.bundle.subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        verify_chain(&self.bundle, &self.algorithms, end_entity, intermediates, now, Usage::Client)
            .map_err(IdentityError::into_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    /// Unused: every Ambit configuration is TLS 1.3 only.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
