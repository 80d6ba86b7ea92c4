//! The control plane's own serving certificate, `spiffe://<td>/ns/<root namespace>/sa/ambit-control-plane`,
//! issued by its own CA at start and again at every half-life. The rustls configuration's
//! certificate resolver is swapped: new connections get the new certificate, open ones keep
//! theirs (a TLS session does not re-authenticate).

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use ambit_common::identity::{self, SpiffeId, WorkloadCert};
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::task::JoinHandle;

use super::{Ca, CaError, authz::AuthorizedIdentity, sign};

/// The service account name of the control plane's identity.
pub const SERVICE_ACCOUNT: &str = "ambit-control-plane";
/// After a failed renewal (which needs no IO, so this is unlikely), try again this soon.
const RETRY: Duration = Duration::from_secs(1);
/// The shortest time between two renewals.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// The control plane's identity in `trust_domain`.
pub fn control_plane_identity(trust_domain: &str, root_namespace: &str) -> Result<SpiffeId, CaError> {
    SpiffeId::new(trust_domain, root_namespace, SERVICE_ACCOUNT).map_err(|e| CaError::Serving(e.to_string()))
}

/// Issues a fresh key and certificate for `id` (through the same CSR path as node proxies).
pub fn issue(ca: &Ca, id: &SpiffeId) -> Result<WorkloadCert, CaError> {
    let (csr, key) = identity::generate_csr(id).map_err(|e| CaError::Serving(e.to_string()))?;
    let authorized = AuthorizedIdentity::control_plane(id.clone());
    let issued =
        sign::sign(ca.root(), &csr, &authorized, ca.lifetime()).map_err(|e| CaError::Serving(e.to_string()))?;
    let cert = WorkloadCert::from_pem(&issued.chain_pem.concat(), &key).map_err(|e| CaError::Serving(e.to_string()))?;
    tracing::info!(identity = %id, serial = %issued.serial, expires = %super::stats::rfc3339(cert.not_after()), "control plane serving certificate issued");
    Ok(cert)
}

/// The certificate presented to new connections.
#[derive(Debug)]
pub struct RotatingCert {
    current: RwLock<(WorkloadCert, Arc<CertifiedKey>)>,
}

impl RotatingCert {
    fn new(cert: WorkloadCert) -> Self {
        let key = cert.certified_key();
        Self { current: RwLock::new((cert, key)) }
    }

    pub fn current(&self) -> WorkloadCert {
        self.current.read().expect("serving certificate").0.clone()
    }

    fn replace(&self, cert: WorkloadCert) {
        let key = cert.certified_key();
        *self.current.write().expect("serving certificate") = (cert, key);
    }
}

impl ResolvesServerCert for RotatingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("serving certificate").1.clone())
    }
}

/// The gRPC server's TLS configuration with a rotating certificate, and the task that rotates
/// it (stops when the handle is aborted or dropped with the runtime).
pub struct Serving {
    pub config: Arc<ServerConfig>,
    pub cert: Arc<RotatingCert>,
    pub task: JoinHandle<()>,
}

/// Issues the first certificate and starts rotating it at half-life.
pub fn start(ca: Arc<Ca>, id: SpiffeId) -> Result<Serving, CaError> {
    let first = issue(&ca, &id)?;
    // Identity's settings (TLS 1.3, ALPN h2, aws-lc-rs), with our resolver in place of its fixed one.
    let mut config = ServerConfig::clone(&identity::tls::control_plane_server_config(&first));
    let cert = Arc::new(RotatingCert::new(first));
    config.cert_resolver = cert.clone();
    let task = tokio::spawn(rotate(ca, id, cert.clone()));
    Ok(Serving { config: Arc::new(config), cert, task })
}

async fn rotate(ca: Arc<Ca>, id: SpiffeId, cert: Arc<RotatingCert>) {
    loop {
        let due = cert.current().refresh_at();
        // Never a busy loop, whatever the clock says.
        let wait = due.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).max(MIN_WAIT);
        tokio::time::sleep(wait).await;
        match issue(&ca, &id) {
            Ok(next) => cert.replace(next),
            Err(e) => {
                tracing::error!("renewing the control plane's serving certificate: {e}; retrying in {RETRY:?}");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
