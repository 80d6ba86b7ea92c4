//! Workload certificates: a chain with its private key, and what Ambit reads from certificates.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rustls::{crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{IdentityError, SpiffeId};

/// A workload certificate with its private key. Cheap to clone.
#[derive(Clone)]
pub struct WorkloadCert {
    inner: Arc<Inner>,
}

struct Inner {
    identity: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
    certified_key: Arc<CertifiedKey>,
    chain_pem: String,
}

impl WorkloadCert {
    /// `chain_pem`: the leaf first, then any intermediates (not the root). The identity is the
    /// leaf's single SPIFFE URI SAN; the key must match the leaf.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::InvalidPem { what: "certificate chain", reason: e.to_string() })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => IdentityError::EmptyPem {
                what: "private key",
                expected: "private key",
                hint: "expected a PKCS#8 or SEC1 EC private key",
            },
            e => IdentityError::InvalidPem { what: "private key", reason: e.to_string() },
        })?;
        Self::from_der(chain, key, &super::provider())
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<Self, IdentityError> {
        let Some(leaf) = chain.first() else {
            return Err(IdentityError::EmptyPem {
                what: "certificate chain",
                expected: "certificate",
                hint: "expected the leaf certificate first, then any intermediates",
            });
        };
        let parsed = parse(leaf, "leaf")?;
        let identity = parsed.identity()?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::InvalidKey { reason: e.to_string() })?;
        let chain_pem = chain.iter().map(|c| to_pem(c)).collect();
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(IdentityError::KeyMismatch),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                identity,
                not_before: parsed.not_before,
                not_after: parsed.not_after,
                certified_key: Arc::new(certified_key),
                chain_pem,
            }),
        })
    }

    pub fn identity(&self) -> &SpiffeId {
        &self.inner.identity
    }

    pub fn not_before(&self) -> SystemTime {
        self.inner.not_before
    }

    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// Half-life: when a holder should renew.
    pub fn refresh_at(&self) -> SystemTime {
        let lifetime = self.inner.not_after.duration_since(self.inner.not_before).unwrap_or(Duration::ZERO);
        self.inner.not_before + lifetime / 2
    }

    /// For rustls (a server's `ResolvesServerCert`, a client's certificate).
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.inner.certified_key.clone()
    }

    /// The chain, leaf first, as PEM.
    pub fn chain_pem(&self) -> String {
        self.inner.chain_pem.clone()
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.certified_key.cert
    }
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.inner.identity)
            .field("not_before", &self.inner.not_before)
            .field("not_after", &self.inner.not_after)
            .finish_non_exhaustive()
    }
}

/// What Ambit reads from a certificate.
pub(crate) struct Parsed {
    /// URI SANs that are SPIFFE ids, in certificate order (not yet validated).
    pub(crate) spiffe_uris: Vec<String>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    /// For a CA certificate: the trust domain of a `spiffe://<trust domain>` URI SAN.
    pub(crate) root_trust_domain: Option<String>,
}

impl Parsed {
    /// The single SPIFFE id of a workload certificate.
    pub(crate) fn identity(&self) -> Result<SpiffeId, IdentityError> {
        match self.spiffe_uris.as_slice() {
            [] => Err(IdentityError::NoSpiffeId),
            [one] => one.parse(),
            several => Err(IdentityError::SeveralSpiffeIds { ids: several.to_vec() }),
        }
    }
}

/// Reads SANs and validity; `what` names the certificate in errors ("leaf", "trust bundle's").
pub(crate) fn parse(der: &CertificateDer<'_>, what: &'static str) -> Result<Parsed, IdentityError> {
    let invalid = |reason: String| IdentityError::InvalidCertificate { what, reason };
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| invalid(e.to_string()))?;
    let uris = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .filter(|uri| SpiffeId::is_spiffe_uri(uri));
    let mut spiffe_uris = Vec::new();
    let mut root_trust_domain = None;
    for uri in uris {
        if cert.is_ca() {
            let td = uri["spiffe://".len()..].trim_end_matches('/');
            if !td.contains('/') && root_trust_domain.is_none() {
                root_trust_domain = Some(td.to_owned());
            }
        }
        spiffe_uris.push(uri.to_owned());
    }
    let validity = cert.validity();
    Ok(Parsed {
        spiffe_uris,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
        root_trust_domain,
    })
}

fn system_time(unix_seconds: i64) -> SystemTime {
    match u64::try_from(unix_seconds) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs()),
    }
}

pub(crate) fn to_pem(der: &CertificateDer<'_>) -> String {
    let pem = pem::Pem::new("CERTIFICATE", der.as_ref());
    pem::encode_config(&pem, pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF))
}
