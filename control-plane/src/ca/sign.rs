//! Issuing a leaf: the CSR gives only its public key (after its signature is checked); the
//! identity is the one authorization decided ([`AuthorizedIdentity`]), never the CSR's SANs,
//! subject or extensions.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};

use super::{
    authz::AuthorizedIdentity,
    root::{RootCa, datetime, random_serial},
};

/// Validity starts this long before issuance, so peers whose clocks run a little behind accept a
/// new certificate at once; at most a tenth of the lifetime, so that a short-lived certificate's
/// half-life (when holders renew, counted from `notBefore`) stays in the future.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A signed leaf.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf, then the CA's intermediates (not the root), PEM.
    pub chain_pem: Vec<String>,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "the CSR is not a valid PKCS#10 request or its signature does not verify ({0}): send a \
         PEM CSR signed by the key the certificate is for"
    )]
    Csr(rcgen::Error),
    #[error("signing the certificate for {identity}: {reason}")]
    Sign { identity: String, reason: rcgen::Error },
}

/// Signs the public key of `csr_pem` as `identity`, valid for `lifetime` from now.
pub fn sign(
    root: &RootCa,
    csr_pem: &str,
    identity: &AuthorizedIdentity,
    lifetime: Duration,
) -> Result<Issued, SignError> {
    // from_pem checks the CSR's self-signature: the requester holds the private key.
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(SignError::Csr)?;
    let sign_error = |reason| SignError::Sign { identity: identity.id().to_string(), reason };
    let now = SystemTime::now();
    let not_before = now - CLOCK_SKEW.min(lifetime / 10);
    let not_after = now + lifetime;
    let serial = random_serial();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.id().as_str().try_into().map_err(sign_error)?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = datetime(not_before);
    params.not_after = datetime(not_after);
    params.serial_number = Some(serial.clone());
    let leaf = params.signed_by(&csr.public_key, root.issuer()).map_err(sign_error)?;
    let mut chain_pem = vec![leaf.pem()];
    chain_pem.extend(root.intermediates_pem().iter().cloned());
    let serial = serial.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    // Whole seconds: what the certificate holds.
    let truncate = |t: SystemTime| {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    Ok(Issued { chain_pem, serial, not_before: truncate(not_before), not_after: truncate(not_after) })
}

#[cfg(test)]
mod tests {
    use ambit_common::identity::{SpiffeId, generate_csr};
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

    use super::*;
    use crate::ca::root::{PemMaterial, RootOrigin, generate_root};

    #[test]
    fn a_leaf_has_one_uri_san_and_workload_usages() {
        let (cert, key) = generate_root("cluster.local").unwrap();
        let root = RootCa::from_pem(
            &PemMaterial { cert, key, ..Default::default() },
            RootOrigin::Generated { at: "test".into() },
        )
        .unwrap();
        let id = SpiffeId::new("cluster.local", "shop", "cart").unwrap();
        let (csr, _) = generate_csr(&SpiffeId::new("cluster.local", "shop", "web").unwrap()).unwrap();
        let issued = sign(&root, &csr, &AuthorizedIdentity::control_plane(id), Duration::from_secs(3600)).unwrap();
        let der = pem::parse(&issued.chain_pem[0]).unwrap();
        let (_, leaf) = X509Certificate::from_der(der.contents()).unwrap();
        assert!(leaf.subject().iter().next().is_none(), "empty subject");
        let mut seen = Vec::new();
        for ext in leaf.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    assert!(ext.critical, "SAN is critical when the subject is empty (RFC 5280 4.2.1.6)");
                    let names: Vec<String> = san
                        .general_names
                        .iter()
                        .map(|n| match n {
                            GeneralName::URI(uri) => (*uri).to_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    assert_eq!(names, ["spiffe://cluster.local/ns/shop/sa/cart"]);
                    seen.push("san");
                }
                ParsedExtension::KeyUsage(ku) => {
                    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
                    seen.push("ku");
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(eku.server_auth && eku.client_auth);
                    seen.push("eku");
                }
                ParsedExtension::BasicConstraints(bc) => {
                    assert!(!bc.ca);
                    seen.push("bc");
                }
                _ => {}
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, ["bc", "eku", "ku", "san"]);
        let lifetime = issued.not_after.duration_since(issued.not_before).unwrap();
        assert!(lifetime >= Duration::from_secs(3600 + 59), "backdated a minute: {lifetime:?}");
    }
}
