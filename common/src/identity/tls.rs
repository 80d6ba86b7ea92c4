//! The rustls configurations of Ambit's two TLS users: HBONE between node proxies (mutual TLS on
//! port 15008, both sides authenticated by SPIFFE id) and the control plane's gRPC server (server
//! authentication only: proxies prove who they are with bearer tokens, having no certificate
//! before the CA signs one). All are TLS 1.3 only, ALPN `h2`, on the pinned aws-lc-rs provider.
//!
//! Session resumption is off everywhere: every connection is verified in full, at its own time,
//! against the bundle in force (a resumed session would carry the identity of a certificate that
//! may since have expired or been rotated away). HBONE pools connections, so full handshakes are
//! rare; no tickets are sent after a handshake either.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig, server::ResolvesServerCert, sign::SingleCertAndKey};

use super::{
    SpiffeId, TrustBundle, WorkloadCert,
    verify::{ClientIdentityVerifier, ServerIdentityVerifier},
};

/// The only application protocol: HTTP/2 (HBONE's CONNECT, gRPC).
pub const ALPN_H2: &[u8] = b"h2";

/// HBONE server (port 15008): TLS 1.3 only, ALPN "h2", client certificate required and verified
/// against `bundle` (chain, validity, client-auth usage, exactly one SPIFFE URI SAN in the
/// bundle's trust domain when it knows one). The server certificate comes from `resolver`,
/// which picks it by the local address the connection arrived on (see `tests/identity_tls.rs`).
/// Read the client's identity after the handshake with [`super::peer_identity`].
pub fn hbone_server_config(resolver: Arc<dyn ResolvesServerCert>, bundle: &TrustBundle) -> Arc<ServerConfig> {
    let config = server_builder()
        .with_client_cert_verifier(ClientIdentityVerifier::new(bundle.clone()))
        .with_cert_resolver(resolver);
    finish_server(config)
}

/// HBONE client: TLS 1.3, ALPN "h2", presents `cert`, and accepts the server only if its chain
/// verifies against `bundle` and its SPIFFE id is `expected`. The `ServerName` given to connect
/// is not checked (pass the peer IP: an IP sends no SNI); a refusal's error names both ids.
pub fn hbone_client_config(cert: &WorkloadCert, bundle: &TrustBundle, expected: &SpiffeId) -> Arc<ClientConfig> {
    let config = client_builder()
        .dangerous()
        .with_custom_certificate_verifier(ServerIdentityVerifier::new(bundle.clone(), expected.clone()))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(cert.certified_key())));
    finish_client(config)
}

/// The control plane's gRPC server: TLS 1.3, ALPN "h2", no client certificate.
pub fn control_plane_server_config(cert: &WorkloadCert) -> Arc<ServerConfig> {
    control_plane_server_config_with_resolver(Arc::new(SingleCertAndKey::from(cert.certified_key())))
}

/// [`control_plane_server_config`] with the certificate from `resolver` (one that rotates).
pub fn control_plane_server_config_with_resolver(resolver: Arc<dyn ResolvesServerCert>) -> Arc<ServerConfig> {
    finish_server(server_builder().with_no_client_auth().with_cert_resolver(resolver))
}

/// Proxies talking to the control plane: its chain must verify against `bundle` and its SPIFFE id
/// be `expected`; no client certificate.
pub fn control_plane_client_config(bundle: &TrustBundle, expected: &SpiffeId) -> Arc<ClientConfig> {
    let config = client_builder()
        .dangerous()
        .with_custom_certificate_verifier(ServerIdentityVerifier::new(bundle.clone(), expected.clone()))
        .with_no_client_auth();
    finish_client(config)
}

fn finish_server(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn finish_client(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn server_builder() -> rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier> {
    ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the aws-lc-rs provider supports TLS 1.3 (tested in tls::tests)")
}

fn client_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the aws-lc-rs provider supports TLS 1.3 (tested in tls::tests)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::testing::TestCa;

    #[test]
    fn configs_are_tls13_h2_on_aws_lc() {
        let ca = TestCa::new("cluster.local");
        let id = SpiffeId::new("cluster.local", "ns", "sa").unwrap();
        let cert = ca.issue(&id, std::time::Duration::from_secs(3600));
        let server = control_plane_server_config(&cert);
        assert_eq!(server.alpn_protocols, vec![b"h2".to_vec()]);
        assert!(server.crypto_provider().cipher_suites.iter().any(|s| s.version() == &rustls::version::TLS13));
        let client = control_plane_client_config(&ca.bundle(), &id);
        assert_eq!(client.alpn_protocols, vec![b"h2".to_vec()]);
        let hbone = hbone_client_config(&cert, &ca.bundle(), &id);
        assert!(hbone.client_auth_cert_resolver.has_certs());
        let resolver = Arc::new(SingleCertAndKey::from(cert.certified_key()));
        let hbone_server = hbone_server_config(resolver, &ca.bundle());
        assert_eq!(hbone_server.alpn_protocols, vec![b"h2".to_vec()]);
        for config in [&server, &hbone_server] {
            assert_eq!(config.send_tls13_tickets, 0);
            assert!(!config.session_storage.can_cache());
        }
    }
}
