//! Workload certificates: one per identity (`spiffe://<td>/ns/<ns>/sa/<sa>`) of the pods this
//! node proxy carries traffic for, and only those. Fetched from the control plane's CA when the
//! first pod with that identity is enrolled (so the first connection rarely waits), renewed at
//! half-life with backoff on failure, dropped when the last such pod leaves.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

pub(crate) use ambit_common::identity::ca_client::CaClient;
use ambit_common::identity::{SpiffeId, TrustBundle, WorkloadCert, ca_client::keep_renewed};
use tokio::{sync::watch, task::AbortHandle};

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
        let task = tokio::spawn(keep_renewed(self.ca.clone(), id.clone(), tx, self.bundle.clone()));
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
