//! Workload certificates: one per identity (`spiffe://<td>/ns/<ns>/sa/<sa>`) of the pods this
//! node proxy carries traffic for, and only those. Fetched from the control plane's CA when the
//! first pod with that identity is enrolled (so the first connection rarely waits), renewed at
//! half-life with backoff on failure, dropped when the last such pod leaves.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use ambit_common::{
    api::v1::{SignRequest, certificate_authority_client::CertificateAuthorityClient},
    discovery::backoff::Backoff,
    identity::{SpiffeId, TrustBundle, WorkloadCert, generate_csr},
};
use tokio::{sync::watch, task::AbortHandle};
use tonic::transport::{Channel, Endpoint};

/// How long a connection waits for a certificate that is still being fetched.
const FIRST_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub(crate) enum CertError {
    #[error("no certificate for {0} yet (the CA has not answered; see the node proxy log)")]
    NotYet(SpiffeId),
    #[error("the certificate for {0} expired and the CA has not renewed it (see the node proxy log)")]
    Expired(SpiffeId),
    #[error("{0} is not an identity of a pod on this node")]
    NotHeld(SpiffeId),
}

/// How the node proxy reaches the CA: the control plane's gRPC endpoint, over TLS.
pub(crate) struct CaClient {
    endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    /// Connected on first use (the control plane may start after the node proxy), reused after.
    channel: tokio::sync::Mutex<Option<Channel>>,
    /// A token proving which node this is (re-read per request: projected tokens rotate).
    token_file: PathBuf,
}

impl CaClient {
    pub(crate) fn new(endpoint: Endpoint, tls: Arc<rustls::ClientConfig>, token_file: PathBuf) -> Self {
        Self { endpoint, tls, channel: tokio::sync::Mutex::new(None), token_file }
    }

    async fn channel(&self) -> Result<Channel, String> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = ambit_common::identity::grpc::tls_channel(self.endpoint.clone(), self.tls.clone())
            .await
            .map_err(|e| format!("cannot reach the CA at {}: {e}", self.endpoint.uri()))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    async fn sign(&self, id: &SpiffeId) -> Result<(WorkloadCert, TrustBundle), String> {
        let (csr_pem, key_pem) = generate_csr(id).map_err(|e| e.to_string())?;
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("reading the CA token {}: {e}", self.token_file.display()))?;
        let mut request = tonic::Request::new(SignRequest { csr_pem, identity: id.to_string(), lifetime_seconds: 0 });
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| format!("the CA token in {} is not valid header text", self.token_file.display()))?;
        request.metadata_mut().insert("authorization", value);
        let channel = self.channel().await?;
        let response = CertificateAuthorityClient::new(channel)
            .sign(request)
            .await
            .map_err(|status| format!("the CA refused {id}: {} ({:?})", status.message(), status.code()))?
            .into_inner();
        let cert = WorkloadCert::from_pem(&response.cert_chain_pem.concat(), &key_pem).map_err(|e| e.to_string())?;
        if cert.identity() != id {
            return Err(format!("the CA returned a certificate for {}, not {id}", cert.identity()));
        }
        let bundle = TrustBundle::from_pem(&response.trust_bundle_pem).map_err(|e| e.to_string())?;
        Ok((cert, bundle))
    }
}

struct Entry {
    cert: watch::Receiver<Option<WorkloadCert>>,
    holders: usize,
    refresher: AbortHandle,
}

pub(crate) struct CertManager {
    ca: Arc<CaClient>,
    bundle: watch::Sender<TrustBundle>,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
}

impl CertManager {
    pub(crate) fn new(ca: CaClient, bundle: TrustBundle) -> Arc<Self> {
        Arc::new(Self { ca: Arc::new(ca), bundle: watch::channel(bundle).0, entries: Mutex::default() })
    }

    /// The roots peers are verified against (updated from the CA's answers).
    pub(crate) fn bundle(&self) -> TrustBundle {
        self.bundle.borrow().clone()
    }

    /// A pod with identity `id` is enrolled: hold its certificate (fetching it if needed).
    pub(crate) fn retain(&self, id: &SpiffeId) -> watch::Receiver<Option<WorkloadCert>> {
        let mut entries = self.entries.lock().expect("certs lock");
        if let Some(entry) = entries.get_mut(id) {
            entry.holders += 1;
            return entry.cert.clone();
        }
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(refresh(self.ca.clone(), id.clone(), tx, self.bundle.clone()));
        entries.insert(id.clone(), Entry { cert: rx.clone(), holders: 1, refresher: task.abort_handle() });
        rx
    }

    /// A pod with identity `id` left: the certificate goes with the last one.
    pub(crate) fn release(&self, id: &SpiffeId) {
        let mut entries = self.entries.lock().expect("certs lock");
        if let Some(entry) = entries.get_mut(id) {
            entry.holders -= 1;
            if entry.holders == 0 {
                entry.refresher.abort();
                entries.remove(id);
                tracing::info!(identity = %id, "no pod with this identity left on the node; certificate dropped");
            }
        }
    }

    /// The current certificate for `id`, waiting (bounded) for the first fetch.
    pub(crate) async fn get(&self, id: &SpiffeId) -> Result<WorkloadCert, CertError> {
        let mut rx = {
            let entries = self.entries.lock().expect("certs lock");
            entries.get(id).ok_or_else(|| CertError::NotHeld(id.clone()))?.cert.clone()
        };
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(FIRST_FETCH_TIMEOUT, wait).await {
            Ok(Ok(cert)) => {
                let cert = cert.clone().expect("waited for Some");
                // Never offer a certificate peers will refuse anyway.
                if cert.not_after() <= SystemTime::now() {
                    return Err(CertError::Expired(id.clone()));
                }
                Ok(cert)
            }
            _ => Err(CertError::NotYet(id.clone())),
        }
    }

    /// Identities held and their expiry, for the admin API.
    pub(crate) fn status(&self) -> Vec<serde_json::Value> {
        let entries = self.entries.lock().expect("certs lock");
        entries
            .iter()
            .map(|(id, entry)| {
                let cert = entry.cert.borrow();
                let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                serde_json::json!({
                    "identity": id.to_string(),
                    "pods": entry.holders,
                    "notAfterUnix": cert.as_ref().map(|c| secs(c.not_after())),
                    "refreshAtUnix": cert.as_ref().map(|c| secs(c.refresh_at())),
                })
            })
            .collect()
    }
}

/// Keeps `tx` holding a valid certificate for `id`: fetch, sleep until half-life, fetch again;
/// on failure retry with backoff while the old certificate (if any) stays in use.
async fn refresh(
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
