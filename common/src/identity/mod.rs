//! Workload identity and mTLS: SPIFFE ids, workload certificates, the mesh trust bundle, and the
//! rustls configurations for HBONE (port 15008) and for the control plane's gRPC server.
//!
//! Every configuration here pins the aws-lc-rs crypto provider and TLS 1.3; nothing depends on a
//! process-wide default provider. Peers are authenticated by SPIFFE id (a URI SAN), never by DNS
//! name or IP: see [`tls`]. Design: `shared/design.md` (Identity and mTLS).

mod bundle;
pub mod ca_client;
mod cert;
mod csr;
mod error;
pub mod grpc;
mod spiffe;
pub mod testing;
pub mod tls;
mod verify;

pub use bundle::TrustBundle;
pub use cert::WorkloadCert;
pub use csr::{generate_csr, requested_identity};
pub use error::IdentityError;
pub use spiffe::{DEFAULT_TRUST_DOMAIN, SpiffeId};
pub use verify::peer_identity;

/// The crypto provider of every TLS configuration and verification in Ambit, pinned here rather
/// than taken from rustls' process-wide default (kube's client brings ring into the same binary).
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<std::sync::Arc<rustls::crypto::CryptoProvider>> =
        std::sync::LazyLock::new(|| std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    PROVIDER.clone()
}

/// Makes aws-lc-rs rustls' process-wide default provider, for libraries that use the default
/// rather than a provider of their own: kube's client calls `ClientConfig::builder()`, which
/// panics when rustls is built with both the `ring` (kube's feature) and `aws_lc_rs` (ours)
/// providers and no default is installed. Call it at the start of `main` in binaries that use
/// kube. Ambit's own configurations never depend on it. A provider installed earlier stays.
pub fn install_default_crypto_provider() {
    // Err: one is installed already; that is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests;
