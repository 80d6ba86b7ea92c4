//! The roots a mesh trusts.

use std::sync::Arc;

use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, TrustAnchor, pem::PemObject};

use super::{IdentityError, cert};

/// The roots a mesh trusts, ready for chain verification. Cheap to clone.
///
/// A bundle may know its trust domain: [`TrustBundle::from_pem`] takes it from the roots' own
/// `spiffe://<trust domain>` URI SAN (roots made by [`super::testing::TestCa`] carry one),
/// [`TrustBundle::with_trust_domain`] sets it. When it is known, verifiers refuse peers of other
/// trust domains; when it is not, any identity the roots signed is accepted.
#[derive(Clone)]
pub struct TrustBundle {
    inner: Arc<Inner>,
}

struct Inner {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    /// For the CertificateRequest's certificate_authorities (hints for clients).
    subjects: Vec<DistinguishedName>,
    trust_domain: Option<String>,
}

impl TrustBundle {
    /// One or more PEM root certificates.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::InvalidPem { what: "trust bundle", reason: e.to_string() })?;
        Self::from_der(roots)
    }

    /// Root certificates, DER.
    pub fn from_der(roots: Vec<CertificateDer<'static>>) -> Result<Self, IdentityError> {
        if roots.is_empty() {
            return Err(IdentityError::EmptyPem {
                what: "trust bundle",
                expected: "certificate",
                hint: "expected the mesh CA's root certificate(s)",
            });
        }
        let mut anchors = Vec::with_capacity(roots.len());
        let mut trust_domain: Option<String> = None;
        for root in &roots {
            let anchor = webpki::anchor_from_trusted_cert(root)
                .map_err(|e| IdentityError::InvalidCertificate { what: "trust bundle's", reason: e.to_string() })?
                .to_owned();
            anchors.push(anchor);
            let Some(td) = cert::parse(root, "trust bundle's")?.root_trust_domain else { continue };
            super::spiffe::check_trust_domain(&td)?;
            match &trust_domain {
                Some(first) if *first != td => {
                    return Err(IdentityError::ConflictingTrustDomains { first: first.clone(), second: td });
                }
                _ => trust_domain = Some(td),
            }
        }
        let subjects = anchors.iter().map(|a| DistinguishedName::in_sequence(a.subject.as_ref())).collect();
        Ok(Self { inner: Arc::new(Inner { roots, anchors, subjects, trust_domain }) })
    }

    /// The same roots, restricted to identities of `trust_domain`.
    pub fn with_trust_domain(self, trust_domain: &str) -> Result<Self, IdentityError> {
        super::spiffe::check_trust_domain(trust_domain)?;
        let inner = &self.inner;
        Ok(Self {
            inner: Arc::new(Inner {
                roots: inner.roots.clone(),
                anchors: inner.anchors.clone(),
                subjects: inner.subjects.clone(),
                trust_domain: Some(trust_domain.to_owned()),
            }),
        })
    }

    /// The roots as PEM (the trust domain set by [`Self::with_trust_domain`] is not part of it).
    pub fn to_pem(&self) -> String {
        self.inner.roots.iter().map(|r| cert::to_pem(r)).collect()
    }

    pub fn trust_domain(&self) -> Option<&str> {
        self.inner.trust_domain.as_deref()
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.inner.roots
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.inner.anchors
    }

    pub(crate) fn subjects(&self) -> &[DistinguishedName] {
        &self.inner.subjects
    }
}

/// The same roots, in the same order, for the same trust domain.
impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.inner.roots == other.inner.roots && self.inner.trust_domain == other.inner.trust_domain
    }
}

impl Eq for TrustBundle {}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("roots", &self.inner.roots.len())
            .field("trust_domain", &self.inner.trust_domain)
            .finish()
    }
}
