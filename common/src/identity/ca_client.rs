//! The proxies' side of the control plane's CA (`CertificateAuthority.Sign`, see
//! `common/proto/ambit/v1/ca.proto`): a client that asks for one identity's certificate with a
//! fresh key, proving who the caller is with a bearer token, and the loop that keeps one
//! identity's certificate valid (fetched, renewed at half-life, retried with backoff). Node
//! proxies run one loop per identity of their pods; a waypoint runs one for itself.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::{IdentityError, SpiffeId, TrustBundle, WorkloadCert, generate_csr};
use crate::{
    api::v1::{SignRequest, certificate_authority_client::CertificateAuthorityClient},
    discovery::backoff::Backoff,
};

/// Why a certificate could not be had; each names the identity or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating a key and CSR for {id}: {source}")]
    Csr { id: SpiffeId, source: IdentityError },
    #[error("reading the CA token {}: {source}", path.display())]
    Token { path: PathBuf, source: std::io::Error },
    #[error("the CA token in {} is not valid header text", path.display())]
    TokenHeader { path: PathBuf },
    #[error("cannot reach the CA at {endpoint}: {source}")]
    Connect { endpoint: String, source: IdentityError },
    #[error("the CA refused {id}: {message} ({code:?})")]
    Refused { id: SpiffeId, message: String, code: tonic::Code },
    #[error("the CA's answer for {id} is unusable: {source}")]
    BadAnswer { id: SpiffeId, source: IdentityError },
    #[error("the CA returned a certificate for {got}, not {id}")]
    WrongIdentity { id: SpiffeId, got: SpiffeId },
}

/// How a proxy reaches the CA: the control plane's gRPC endpoint, over TLS.
pub struct CaClient {
    endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    /// Connected on first use (the control plane may start after the proxy), reused after.
    channel: tokio::sync::Mutex<Option<Channel>>,
    /// A token proving who the caller is (re-read per request: projected tokens rotate).
    token_file: PathBuf,
}

impl CaClient {
    pub fn new(endpoint: Endpoint, tls: Arc<rustls::ClientConfig>, token_file: PathBuf) -> Self {
        Self { endpoint, tls, channel: tokio::sync::Mutex::new(None), token_file }
    }

    async fn channel(&self) -> Result<Channel, CaError> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = super::grpc::tls_channel(self.endpoint.clone(), self.tls.clone())
            .await
            .map_err(|source| CaError::Connect { endpoint: self.endpoint.uri().to_string(), source })?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// A new certificate for `id` (with a fresh key) and the CA's trust bundle.
    pub async fn sign(&self, id: &SpiffeId) -> Result<(WorkloadCert, TrustBundle), CaError> {
        let (csr_pem, key_pem) = generate_csr(id).map_err(|source| CaError::Csr { id: id.clone(), source })?;
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|source| CaError::Token { path: self.token_file.clone(), source })?;
        let mut request = tonic::Request::new(SignRequest { csr_pem, identity: id.to_string(), lifetime_seconds: 0 });
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| CaError::TokenHeader { path: self.token_file.clone() })?;
        request.metadata_mut().insert("authorization", value);
        let channel = self.channel().await?;
        let response = CertificateAuthorityClient::new(channel)
            .sign(request)
            .await
            .map_err(|status| CaError::Refused {
                id: id.clone(),
                message: status.message().to_owned(),
                code: status.code(),
            })?
            .into_inner();
        let bad = |source| CaError::BadAnswer { id: id.clone(), source };
        let cert = WorkloadCert::from_pem(&response.cert_chain_pem.concat(), &key_pem).map_err(bad)?;
        if cert.identity() != id {
            return Err(CaError::WrongIdentity { id: id.clone(), got: cert.identity().clone() });
        }
        let bundle = TrustBundle::from_pem(&response.trust_bundle_pem).map_err(bad)?;
        Ok((cert, bundle))
    }
}

/// Keeps `tx` holding a valid certificate for `id`, forever: fetch, sleep until half-life, fetch
/// again; on failure retry with backoff while the old certificate (if any) stays in use. The
/// CA's roots go to `bundle` when they change.
pub async fn keep_renewed(
    ca: Arc<CaClient>,
    id: SpiffeId,
    tx: watch::Sender<Option<WorkloadCert>>,
    bundle: watch::Sender<TrustBundle>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match ca.sign(&id).await {
            Ok((cert, roots)) => {
                backoff.reset();
                let wait = cert.refresh_at().duration_since(SystemTime::now()).unwrap_or_default();
                tracing::info!(identity = %id, refresh_in = ?wait, "workload certificate issued");
                bundle.send_if_modified(|current| {
                    let changed = current.to_pem() != roots.to_pem();
                    if changed {
                        *current = roots;
                    }
                    changed
                });
                tx.send_replace(Some(cert));
                tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(identity = %id, %error, retry_in = ?delay, "cannot get a workload certificate");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
