//! A certificate authority in a struct: a self-signed ECDSA P-256 root that issues workload
//! certificates. For tests, and as the signing core of the control plane's CA.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::{
    IdentityError, SpiffeId, TrustBundle, WorkloadCert, cert,
    csr::{parse_csr, requested_identity, uri_san},
};

/// A root CA. Its root certificate carries the URI SAN `spiffe://<trust domain>`, so a bundle read
/// from it knows its trust domain.
pub struct TestCa {
    trust_domain: String,
    root: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new root, valid from an hour ago for ten years. Panics on an invalid trust domain (see
    /// [`Self::try_new`]).
    pub fn new(trust_domain: &str) -> Self {
        match Self::try_new(trust_domain) {
            Ok(ca) => ca,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new root, valid from an hour ago for ten years.
    pub fn try_new(trust_domain: &str) -> Result<Self, IdentityError> {
        super::spiffe::check_trust_domain(trust_domain)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|reason| IdentityError::Rcgen { action: "generate an ECDSA P-256 key", reason })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name.push(DnType::CommonName, "Ambit root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let uri = format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(|reason| IdentityError::Rcgen { action: "put the trust domain in a URI SAN", reason })?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let now = SystemTime::now();
        params.not_before = datetime(now - Duration::from_secs(3600));
        params.not_after = datetime(now + Duration::from_secs(10 * 365 * 24 * 3600));
        params.serial_number = Some(serial());
        let root =
            params.self_signed(&key).map_err(|reason| IdentityError::Rcgen { action: "self-sign the root", reason })?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            root: root.der().clone(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A root loaded from its certificate and key (e.g. one persisted by an earlier start).
    pub fn from_pem(trust_domain: &str, root_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        super::spiffe::check_trust_domain(trust_domain)?;
        let root = CertificateDer::from_pem_slice(root_pem.as_bytes())
            .map_err(|e| IdentityError::InvalidPem { what: "root certificate", reason: e.to_string() })?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| IdentityError::InvalidKey { reason: e.to_string() })?;
        let (_, x509) = x509_parser::parse_x509_certificate(root.as_ref())
            .map_err(|e| IdentityError::InvalidCertificate { what: "root", reason: e.to_string() })?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(IdentityError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&root, key)
            .map_err(|reason| IdentityError::Rcgen { action: "use the root certificate as an issuer", reason })?;
        Ok(Self { trust_domain: trust_domain.to_owned(), root, key_pem: key_pem.to_owned(), issuer })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The bundle holding this root, restricted to this CA's trust domain.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_der(vec![self.root.clone()])
            .and_then(|b| b.with_trust_domain(&self.trust_domain))
            .expect("a root this CA holds is a valid trust bundle")
    }

    pub fn root_pem(&self) -> String {
        cert::to_pem(&self.root)
    }

    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// A certificate for `id` valid from now for `lifetime`, with a fresh key.
    pub fn issue(&self, id: &SpiffeId, lifetime: Duration) -> WorkloadCert {
        let now = SystemTime::now();
        self.issue_with_validity(id, now, now + lifetime)
    }

    /// A certificate for `id` with the given validity (in the past for an expired one).
    pub fn issue_with_validity(&self, id: &SpiffeId, not_before: SystemTime, not_after: SystemTime) -> WorkloadCert {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generating an ECDSA P-256 key");
        let params = leaf_params(id, not_before, not_after).expect("a SPIFFE id is a valid URI SAN");
        let leaf = params.signed_by(&key, &self.issuer).expect("signing a leaf");
        WorkloadCert::from_pem(&leaf.pem(), &key.serialize_pem()).expect("a certificate this CA issued is valid")
    }

    /// Signs a CSR for the identity it asks for, valid from now for `lifetime`; returns the chain
    /// (the leaf; this CA has no intermediates) as PEM.
    ///
    /// Only for tests: a real CA decides which identity the caller may have and uses
    /// [`Self::sign_csr_as`] (after comparing with [`super::requested_identity`]).
    pub fn sign_csr(&self, csr_pem: &str, lifetime: Duration) -> Result<String, IdentityError> {
        let id = requested_identity(csr_pem)?;
        self.sign_csr_as(csr_pem, &id, lifetime)
    }

    /// Signs the CSR's public key as `id`, valid from now for `lifetime`. Nothing else is taken from
    /// the CSR (not its SANs, subject or extensions); its signature is checked (the requester
    /// holds the key).
    pub fn sign_csr_as(&self, csr_pem: &str, id: &SpiffeId, lifetime: Duration) -> Result<String, IdentityError> {
        let csr = parse_csr(csr_pem)?;
        let now = SystemTime::now();
        let params = leaf_params(id, now, now + lifetime)?;
        let leaf = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|reason| IdentityError::Rcgen { action: "sign the certificate", reason })?;
        Ok(leaf.pem())
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

/// A workload certificate: empty subject, the SPIFFE id as the only (critical) SAN, not a CA,
/// usable for TLS server and client authentication.
fn leaf_params(
    id: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri_san(id)?];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = datetime(not_before);
    params.not_after = datetime(not_after);
    params.serial_number = Some(serial());
    Ok(params)
}

fn datetime(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A random positive 128-bit serial (RFC 5280: unique per CA, at most 20 bytes).
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    super::provider().secure_random.fill(&mut bytes).expect("the system random source works");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}
