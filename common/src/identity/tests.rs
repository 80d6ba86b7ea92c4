//! Unit tests of certificates, bundles, the test CA and chain verification (handshakes are in
//! `common/tests/identity_tls.rs`).

use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
use rustls_pki_types::UnixTime;

use super::{
    testing::TestCa,
    verify::{Usage, verify_chain},
    *,
};

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "bookinfo", sa).unwrap()
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}

/// A leaf signed by `ca` from hand-written params (SANs, EKUs the mesh CA would not issue).
fn custom_leaf(ca: &TestCa, edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
    let issuer = Issuer::from_ca_cert_pem(&ca.root_pem(), KeyPair::from_pem(&ca.key_pem()).unwrap()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    edit(&mut params);
    (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

fn verify(ca: &TestCa, cert: &WorkloadCert, usage: Usage) -> Result<SpiffeId, IdentityError> {
    let chain = cert.chain();
    verify_chain(
        &ca.bundle(),
        &provider().signature_verification_algorithms,
        &chain[0],
        &chain[1..],
        UnixTime::now(),
        usage,
    )
}

#[test]
fn workload_cert_reads_identity_validity_and_half_life() {
    let ca = TestCa::new("cluster.local");
    let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let not_after = not_before + Duration::from_secs(86_400);
    let cert = ca.issue_with_validity(&id("reviews"), not_before, not_after);
    assert_eq!(cert.identity(), &id("reviews"));
    assert_eq!(cert.not_before(), not_before);
    assert_eq!(cert.not_after(), not_after);
    assert_eq!(cert.refresh_at(), not_before + Duration::from_secs(43_200));
    assert!(cert.chain_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(!format!("{cert:?}").contains("PRIVATE"));

    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let e = WorkloadCert::from_pem(&cert.chain_pem(), &other_key).unwrap_err();
    assert!(matches!(e, IdentityError::KeyMismatch), "{e}");
}

#[test]
fn workload_cert_refuses_bad_input() {
    let ca = TestCa::new("cluster.local");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let err = |chain: &str, key: &str| WorkloadCert::from_pem(chain, key).unwrap_err().to_string();

    assert!(err("", &key).contains("holds no certificate"));
    assert!(err(&ca.root_pem(), "").contains("holds no private key"));
    assert!(err("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", &key).contains("PEM"));

    let (dns_only, dns_key) =
        custom_leaf(&ca, |p| p.subject_alt_names = vec![SanType::DnsName("reviews".try_into().unwrap())]);
    let e = err(&dns_only, &dns_key);
    assert!(e.contains("no SPIFFE URI SAN") && e.contains("mesh CA"), "{e}");

    let (two, two_key) = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![uri("spiffe://cluster.local/ns/a/sa/x"), uri("spiffe://cluster.local/ns/b/sa/y")];
    });
    let e = err(&two, &two_key);
    assert!(e.contains("2 SPIFFE URI SANs") && e.contains("ns/b/sa/y"), "{e}");

    let (bad_shape, bad_key) =
        custom_leaf(&ca, |p| p.subject_alt_names = vec![uri("spiffe://cluster.local/workload/x")]);
    assert!(err(&bad_shape, &bad_key).contains("/ns/<namespace>/sa/<service account>"));

    // Other URI SANs beside the SPIFFE one are not identities.
    let (extra, extra_key) = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![uri("https://example.com/x"), uri("spiffe://cluster.local/ns/a/sa/x")];
    });
    assert_eq!(
        WorkloadCert::from_pem(&extra, &extra_key).unwrap().identity().as_str(),
        "spiffe://cluster.local/ns/a/sa/x"
    );
}

#[test]
fn bundle_round_trips_and_knows_its_trust_domain() {
    let ca = TestCa::new("mesh.example");
    let bundle = TrustBundle::from_pem(&ca.root_pem()).unwrap();
    assert_eq!(bundle.trust_domain(), Some("mesh.example"));
    assert_eq!(bundle.to_pem(), ca.root_pem());
    assert_eq!(TrustBundle::from_pem(&bundle.to_pem()).unwrap(), bundle);

    let two = format!("{}{}", ca.root_pem(), TestCa::new("mesh.example").root_pem());
    assert_eq!(TrustBundle::from_pem(&two).unwrap().roots().len(), 2);
    let conflicting = format!("{}{}", ca.root_pem(), TestCa::new("other.example").root_pem());
    let e = TrustBundle::from_pem(&conflicting).unwrap_err().to_string();
    assert!(e.contains("mesh.example") && e.contains("other.example"), "{e}");

    assert!(TrustBundle::from_pem("").unwrap_err().to_string().contains("root certificate"));
    assert!(bundle.clone().with_trust_domain("Bad:Domain").is_err());
    assert_eq!(bundle.with_trust_domain("x.y").unwrap().trust_domain(), Some("x.y"));
}

#[test]
fn bundle_of_a_root_without_spiffe_san_accepts_any_trust_domain() {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root = params.self_signed(&key).unwrap().pem();
    let bundle = TrustBundle::from_pem(&root).unwrap();
    assert_eq!(bundle.trust_domain(), None);
    let ca = TestCa::from_pem("cluster.local", &root, &key.serialize_pem()).unwrap();
    let other_td = SpiffeId::new("elsewhere", "ns", "sa").unwrap();
    let cert = ca.issue(&other_td, hour());
    let chain = cert.chain();
    let verified = verify_chain(
        &bundle,
        &provider().signature_verification_algorithms,
        &chain[0],
        &[],
        UnixTime::now(),
        Usage::Client,
    );
    assert_eq!(verified.unwrap(), other_td);
}

#[test]
fn chain_verification_says_what_is_wrong() {
    let ca = TestCa::new("cluster.local");
    assert_eq!(verify(&ca, &ca.issue(&id("a"), hour()), Usage::Server).unwrap(), id("a"));
    assert_eq!(verify(&ca, &ca.issue(&id("a"), hour()), Usage::Client).unwrap(), id("a"));

    let now = SystemTime::now();
    let expired = ca.issue_with_validity(&id("a"), now - 2 * hour(), now - hour());
    assert!(matches!(verify(&ca, &expired, Usage::Client), Err(IdentityError::Expired { .. })));
    let future = ca.issue_with_validity(&id("a"), now + hour(), now + 2 * hour());
    assert!(matches!(verify(&ca, &future, Usage::Client), Err(IdentityError::NotYetValid { .. })));

    let stranger = TestCa::new("cluster.local").issue(&id("a"), hour());
    let e = verify(&ca, &stranger, Usage::Client).unwrap_err();
    assert!(matches!(e, IdentityError::UntrustedChain { .. }), "{e}");
    assert!(e.to_string().contains("another CA"), "{e}");

    let other_td = ca.issue(&SpiffeId::new("other.local", "ns", "sa").unwrap(), hour());
    let e = verify(&ca, &other_td, Usage::Client).unwrap_err().to_string();
    assert!(e.contains("spiffe://other.local/ns/ns/sa/sa") && e.contains("\"cluster.local\""), "{e}");

    let (server_only, key) = custom_leaf(&ca, |p| {
        p.subject_alt_names = vec![uri("spiffe://cluster.local/ns/a/sa/x")];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let server_only = WorkloadCert::from_pem(&server_only, &key).unwrap();
    assert!(verify(&ca, &server_only, Usage::Server).is_ok());
    let e = verify(&ca, &server_only, Usage::Client).unwrap_err().to_string();
    assert!(e.contains("client authentication"), "{e}");
}

#[test]
fn persisted_root_keeps_issuing_for_the_same_bundle() {
    let ca = TestCa::new("cluster.local");
    let reloaded = TestCa::from_pem("cluster.local", &ca.root_pem(), &ca.key_pem()).unwrap();
    assert_eq!(verify(&ca, &reloaded.issue(&id("a"), hour()), Usage::Client).unwrap(), id("a"));

    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let e = TestCa::from_pem("cluster.local", &ca.root_pem(), &other_key).unwrap_err();
    assert!(matches!(e, IdentityError::KeyMismatch), "{e}");
    assert!(TestCa::try_new("Not A Domain").is_err());
}

#[test]
fn csr_is_signed_for_the_identity_the_ca_chooses() {
    let ca = TestCa::new("cluster.local");
    let (csr, key) = generate_csr(&id("reviews")).unwrap();
    let chain = ca.sign_csr(&csr, hour()).unwrap();
    let cert = WorkloadCert::from_pem(&chain, &key).unwrap();
    assert_eq!(cert.identity(), &id("reviews"));
    assert_eq!(verify(&ca, &cert, Usage::Client).unwrap(), id("reviews"));

    // The CA decides: the CSR's requested SAN is not copied.
    let chain = ca.sign_csr_as(&csr, &id("ratings"), hour()).unwrap();
    assert_eq!(WorkloadCert::from_pem(&chain, &key).unwrap().identity(), &id("ratings"));
}

#[test]
fn serials_are_unique() {
    let ca = TestCa::new("cluster.local");
    let serial = |c: &WorkloadCert| {
        let (_, x) = x509_parser::parse_x509_certificate(c.chain()[0].as_ref()).unwrap();
        x.raw_serial().to_vec()
    };
    assert_ne!(serial(&ca.issue(&id("a"), hour())), serial(&ca.issue(&id("a"), hour())));
}

#[test]
fn peer_identity_reads_the_leaf() {
    let ca = TestCa::new("cluster.local");
    let cert = ca.issue(&id("a"), hour());
    assert_eq!(peer_identity(cert.chain()).unwrap(), id("a"));
    assert!(peer_identity(&[]).unwrap_err().to_string().contains("presented no certificate"));
}

#[test]
fn test_ca_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<TestCa>();
    assert_send_sync::<WorkloadCert>();
    assert_send_sync::<TrustBundle>();
    assert_send_sync::<SpiffeId>();
}
