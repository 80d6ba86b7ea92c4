//! Keys and certificate signing requests for workload identities.

use rcgen::{CertificateParams, CertificateSigningRequestParams, DistinguishedName, KeyPair, SanType};

use super::{IdentityError, SpiffeId};

/// A fresh ECDSA P-256 key and a CSR for `id` (its only SAN is the URI `id`, its subject empty),
/// as PEM: `(csr_pem, key_pem)`. Keep the key; send the CSR to the CA.
pub fn generate_csr(id: &SpiffeId) -> Result<(String, String), IdentityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|reason| IdentityError::Rcgen { action: "generate an ECDSA P-256 key", reason })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![uri_san(id)?];
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|reason| IdentityError::Rcgen { action: "write the certificate signing request", reason })?;
    Ok((csr, key.serialize_pem()))
}

/// The identity a CSR asks for: its single SPIFFE URI SAN (the CSR's signature is checked).
///
/// A CA must not issue this identity on the CSR's say-so: it decides which identity the caller
/// may have (e.g. from its authenticated token) and refuses a CSR asking for another.
pub fn requested_identity(csr_pem: &str) -> Result<SpiffeId, IdentityError> {
    let csr = parse_csr(csr_pem)?;
    let uris: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::URI(uri) => Some(uri.as_str().to_owned()),
            _ => None,
        })
        .filter(|uri| SpiffeId::is_spiffe_uri(uri))
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoSpiffeId),
        [one] => one.parse(),
        several => Err(IdentityError::SeveralSpiffeIds { ids: several.to_vec() }),
    }
}

/// Parses a CSR and checks its signature (proof that the requester holds the key).
pub(crate) fn parse_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, IdentityError> {
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|reason| IdentityError::Rcgen { action: "read the certificate signing request", reason })
}

pub(crate) fn uri_san(id: &SpiffeId) -> Result<SanType, IdentityError> {
    let uri = id
        .as_str()
        .try_into()
        .map_err(|e: rcgen::Error| IdentityError::Rcgen { action: "put the SPIFFE id in a URI SAN", reason: e })?;
    Ok(SanType::URI(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_asks_for_the_id_and_verifies() {
        let id = SpiffeId::new("cluster.local", "bookinfo", "reviews").unwrap();
        let (csr, key) = generate_csr(&id).unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(requested_identity(&csr).unwrap(), id);
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let id = SpiffeId::new("cluster.local", "bookinfo", "reviews").unwrap();
        let (csr, _) = generate_csr(&id).unwrap();
        assert!(requested_identity("not a csr").is_err());
        // Flip one base64 character inside the body: the signature no longer matches.
        let mut bytes = csr.into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let err = requested_identity(&tampered).unwrap_err().to_string();
        assert!(err.contains("certificate signing request"), "{err}");
    }
}
