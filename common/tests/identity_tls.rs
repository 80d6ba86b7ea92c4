//! Real rustls handshakes with the configurations of `ambit_common::identity::tls`, over in-memory
//! IO (and loopback TCP for the certificate-by-local-address example).

use std::{
    io,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use ambit_common::identity::{
    IdentityError, SpiffeId, TrustBundle, WorkloadCert, generate_csr, peer_identity, testing::TestCa, tls,
};
use rcgen::{CertificateParams, Issuer, KeyPair, SanType};
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
    server::ResolvesServerCert,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TD: &str = "cluster.local";
const HOUR: Duration = Duration::from_secs(3600);

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "bookinfo", sa).unwrap()
}

/// What one side saw of a completed connection.
#[derive(Debug)]
struct Seen {
    peer: SpiffeId,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

/// One handshake and a ping/pong over in-memory IO: `(server, client)`. The exchange matters: in
/// TLS 1.3 the client's handshake completes before the server has checked the client's certificate.
async fn connect(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> (io::Result<Option<Seen>>, io::Result<Seen>) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let server = async move {
        let mut tls = TlsAcceptor::from(server).accept(s).await?;
        pong(&mut tls).await?;
        let (_, conn) = tls.get_ref();
        // None: no client certificate (the control plane's server).
        Ok(conn.peer_certificates().map(|chain| Seen {
            peer: peer_identity(chain).unwrap(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
        }))
    };
    let client = async move {
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)).into());
        let mut tls = TlsConnector::from(client).connect(name, c).await?;
        ping(&mut tls).await?;
        let (_, conn) = tls.get_ref();
        Ok(Seen {
            peer: peer_identity(conn.peer_certificates().unwrap()).unwrap(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
        })
    };
    tokio::join!(server, client)
}

async fn ping(tls: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> io::Result<()> {
    tls.write_all(b"ping").await?;
    tls.flush().await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"pong");
    Ok(())
}

async fn pong(tls: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> io::Result<()> {
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    tls.write_all(b"pong").await?;
    tls.flush().await
}

/// The verifier's error inside a handshake's io::Error, as the node proxy would log it.
fn identity_error(e: &io::Error) -> Option<&IdentityError> {
    IdentityError::from_handshake_error(e)
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Always the same certificate (the node proxy picks by local address: `identity_resolver.rs`).
fn fixed(cert: &WorkloadCert) -> Arc<dyn ResolvesServerCert> {
    Arc::new(rustls::sign::SingleCertAndKey::from(cert.certified_key()))
}

struct Mesh {
    ca: TestCa,
    bundle: TrustBundle,
}

impl Mesh {
    fn new() -> Self {
        let ca = TestCa::new(TD);
        let bundle = ca.bundle();
        Self { ca, bundle }
    }

    /// An HBONE server for `sa`.
    fn server(&self, sa: &str) -> Arc<ServerConfig> {
        tls::hbone_server_config(fixed(&self.ca.issue(&id(sa), HOUR)), &self.bundle)
    }

    /// An HBONE client presenting `cert` and expecting `expected_sa`.
    fn client(&self, cert: &WorkloadCert, expected_sa: &str) -> Arc<ClientConfig> {
        tls::hbone_client_config(cert, &self.bundle, &id(expected_sa))
    }

    /// The server's error when `client` connects to an HBONE server.
    async fn refused(&self, client: Arc<ClientConfig>) -> io::Error {
        let (server, client) = connect(self.server("reviews"), client).await;
        assert!(client.is_err(), "the client saw the connection refused too");
        server.expect_err("the server refused the client")
    }
}

#[tokio::test]
async fn mutual_tls_proves_both_identities_over_tls13_h2() {
    let mesh = Mesh::new();
    let client_cert = mesh.ca.issue(&id("productpage"), HOUR);
    let (server, client) = connect(mesh.server("reviews"), mesh.client(&client_cert, "reviews")).await;
    let (server, client) = (server.unwrap().unwrap(), client.unwrap());
    assert_eq!(server.peer, id("productpage"));
    assert_eq!(client.peer, id("reviews"));
    for side in [&server, &client] {
        assert_eq!(side.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(side.version, Some(rustls::ProtocolVersion::TLSv1_3));
    }
}

#[tokio::test]
async fn client_expecting_another_identity_fails_naming_both() {
    let mesh = Mesh::new();
    let cert = mesh.ca.issue(&id("productpage"), HOUR);
    let (server, client) = connect(mesh.server("reviews"), mesh.client(&cert, "ratings")).await;
    assert!(server.is_err());
    let e = client.unwrap_err();
    assert!(
        e.to_string().contains(
            "server presented spiffe://cluster.local/ns/bookinfo/sa/reviews, \
             expected spiffe://cluster.local/ns/bookinfo/sa/ratings"
        ),
        "{e}"
    );
    let Some(IdentityError::UnexpectedIdentity { presented, expected }) = identity_error(&e) else {
        panic!("not an UnexpectedIdentity: {e:?}");
    };
    assert_eq!((presented, expected), (&id("reviews"), &id("ratings")));
}

#[tokio::test]
async fn client_refuses_server_of_another_ca_or_expired() {
    let mesh = Mesh::new();
    let cert = mesh.ca.issue(&id("productpage"), HOUR);
    let stranger = TestCa::new(TD).issue(&id("reviews"), HOUR);
    let (_, client) =
        connect(tls::hbone_server_config(fixed(&stranger), &mesh.bundle), mesh.client(&cert, "reviews")).await;
    let e = client.unwrap_err();
    assert!(matches!(identity_error(&e), Some(IdentityError::UntrustedChain { .. })), "{e}");

    let now = SystemTime::now();
    let expired = mesh.ca.issue_with_validity(&id("reviews"), now - 2 * HOUR, now - HOUR);
    let (_, client) =
        connect(tls::hbone_server_config(fixed(&expired), &mesh.bundle), mesh.client(&cert, "reviews")).await;
    let e = client.unwrap_err();
    assert!(matches!(identity_error(&e), Some(IdentityError::Expired { .. })), "{e}");
}

#[tokio::test]
async fn server_refuses_client_without_certificate() {
    let mesh = Mesh::new();
    // Verifies the server, presents nothing.
    let e = mesh.refused(tls::control_plane_client_config(&mesh.bundle, &id("reviews"))).await;
    assert!(matches!(rustls_error(&e), Some(rustls::Error::NoCertificatesPresented)), "{e}");
}

#[tokio::test]
async fn server_refuses_self_signed_client() {
    let mesh = Mesh::new();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id("productpage").as_str().try_into().unwrap())];
    let self_signed = params.self_signed(&key).unwrap();
    let cert = WorkloadCert::from_pem(&self_signed.pem(), &key.serialize_pem()).unwrap();
    let e = mesh.refused(mesh.client(&cert, "reviews")).await;
    assert!(matches!(identity_error(&e), Some(IdentityError::UntrustedChain { .. })), "{e}");
    assert!(e.to_string().contains("self-signed"), "{e}");
}

#[tokio::test]
async fn server_refuses_expired_client() {
    let mesh = Mesh::new();
    let now = SystemTime::now();
    let cert = mesh.ca.issue_with_validity(&id("productpage"), now - 2 * HOUR, now - HOUR);
    let e = mesh.refused(mesh.client(&cert, "reviews")).await;
    assert!(matches!(identity_error(&e), Some(IdentityError::Expired { .. })), "{e}");
    assert!(e.to_string().contains("certificate expired at"), "{e}");
}

#[tokio::test]
async fn server_refuses_client_of_another_ca() {
    let mesh = Mesh::new();
    let cert = TestCa::new(TD).issue(&id("productpage"), HOUR);
    let e = mesh.refused(mesh.client(&cert, "reviews")).await;
    assert!(matches!(identity_error(&e), Some(IdentityError::UntrustedChain { .. })), "{e}");
}

#[tokio::test]
async fn server_refuses_client_of_another_trust_domain() {
    let mesh = Mesh::new();
    let cert = mesh.ca.issue(&SpiffeId::new("other.mesh", "bookinfo", "productpage").unwrap(), HOUR);
    let e = mesh.refused(mesh.client(&cert, "reviews")).await;
    assert!(matches!(identity_error(&e), Some(IdentityError::WrongTrustDomain { .. })), "{e}");
}

#[tokio::test]
async fn server_refuses_client_with_dns_san_only() {
    let mesh = Mesh::new();
    // Signed by the mesh CA, but names a host, not a workload.
    let issuer = Issuer::from_ca_cert_pem(&mesh.ca.root_pem(), KeyPair::from_pem(&mesh.ca.key_pem()).unwrap()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = CertificateParams::new(vec!["productpage.bookinfo.svc".to_owned()]).unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let client = any_server_client(&[&rustls::version::TLS13], Some((leaf.der().clone(), &key.serialize_pem())));
    let e = mesh.refused(client).await;
    assert!(matches!(identity_error(&e), Some(IdentityError::NoSpiffeId)), "{e}");
}

#[tokio::test]
async fn server_refuses_tls12_only_client() {
    let mesh = Mesh::new();
    let e = mesh.refused(any_server_client(&[&rustls::version::TLS12], None)).await;
    assert!(matches!(rustls_error(&e), Some(rustls::Error::PeerIncompatible(_))), "{e}");
}

#[tokio::test]
async fn certificate_from_a_generated_csr_works_in_a_handshake() {
    let mesh = Mesh::new();
    let (csr, key) = generate_csr(&id("productpage")).unwrap();
    let cert = WorkloadCert::from_pem(&mesh.ca.sign_csr(&csr, HOUR).unwrap(), &key).unwrap();
    assert_eq!(cert.identity(), &id("productpage"));
    let lifetime = cert.not_after().duration_since(cert.not_before()).unwrap();
    assert_eq!(lifetime, HOUR);
    assert_eq!(cert.refresh_at(), cert.not_before() + HOUR / 2);
    let (server, client) = connect(mesh.server("reviews"), mesh.client(&cert, "reviews")).await;
    assert_eq!(server.unwrap().unwrap().peer, id("productpage"));
    assert_eq!(client.unwrap().peer, id("reviews"));
}

#[tokio::test]
async fn control_plane_tls_authenticates_the_server_only() {
    let mesh = Mesh::new();
    let control_plane = SpiffeId::new(TD, "ambit-system", "ambit-control-plane").unwrap();
    let server = tls::control_plane_server_config(&mesh.ca.issue(&control_plane, HOUR));
    let (seen, client) = connect(server.clone(), tls::control_plane_client_config(&mesh.bundle, &control_plane)).await;
    assert!(seen.unwrap().is_none(), "no client certificate");
    let client = client.unwrap();
    assert_eq!((client.peer, client.alpn.as_deref()), (control_plane, Some(&b"h2"[..])));

    let (_, client) = connect(server, tls::control_plane_client_config(&mesh.bundle, &id("reviews"))).await;
    assert!(matches!(identity_error(&client.unwrap_err()), Some(IdentityError::UnexpectedIdentity { .. })));
}

/// A client that trusts any server, for handshakes the mesh's own configurations cannot make
/// (TLS 1.2, a client certificate without SPIFFE id).
fn any_server_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<(CertificateDer<'static>, &str)>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(vec![cert], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
