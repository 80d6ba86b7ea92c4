//! The control plane's certificate authority (istiod's CA): signs short-lived SPIFFE workload
//! certificates for node proxies and waypoints, and the control plane's own serving certificate.
//! Its authentication also tells Discovery who a subscriber is.
//!
//! ```text
//! Sign(csr, identity) ── authn: bearer token → Claim (node, waypoint, or bound pod)
//!                     ── authz: Claim → Caller (a node, or a waypoint; current Snapshot);
//!                               node: identity ∈ pods on that node;
//!                               waypoint: identity = its own service account's
//!                     ── sign:  CSR's public key (signature checked) + identity → leaf + chain
//! ```
//!
//! | module | job |
//! |---|---|
//! | [`root`] | the signing material, validated; generating a root |
//! | [`store`] | the root in local mode (`--ca-dir`, plug-in files) |
//! | [`secret`] | the root in Kubernetes mode (Secrets `cacerts`, `ambit-ca`) |
//! | [`authn`] | bearer token → [`authn::Claim`]; [`credentials`] (local: node and waypoint tokens), [`kubernetes`] (TokenReview) |
//! | [`authz`] | claim + configuration → [`authz::Caller`]; caller + identity → [`authz::AuthorizedIdentity`] |
//! | [`waypoint`] | a waypoint caller: established from its entry or its pod, its own identity only |
//! | [`sign`] | CSR + authorized identity → leaf |
//! | [`service`] | the gRPC service; refusals → statuses and metric reasons |
//! | [`serving`] | the control plane's own certificate, rotated at half-life |
//! | [`stats`] | `/ca` and the CA's metrics |

pub mod authn;
pub mod authz;
pub mod credentials;
pub mod kubernetes;
pub mod root;
pub mod secret;
pub mod service;
pub mod serving;
pub mod settings;
pub mod sign;
pub mod stats;
pub mod store;
pub mod waypoint;

use std::{sync::Arc, time::Duration};

use ambit_common::{
    api::v1::{SignRequest, SignResponse},
    config::Snapshot,
};
use serde_json::json;
use tonic::metadata::MetadataMap;

use self::{
    authn::Authenticator,
    root::RootCa,
    service::Refusal,
    settings::{CaConfig, RootSource},
    stats::{CaStats, Issuance, rfc3339},
};

/// The configuration in force, read when a request needs it (pods, the nodes they run on, and
/// waypoint Gateways).
pub type SnapshotSource = Arc<dyn Fn() -> Snapshot + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error(
        "the root is in a Kubernetes Secret, but this control plane has no Kubernetes client (start it with --kubernetes)"
    )]
    NoKubernetes,
    #[error("issuing the control plane's own certificate: {0}")]
    Serving(String),
}

/// Loads (or creates) the root as configured, and writes the trust bundle for proxies.
pub async fn load_root(config: &CaConfig, trust_domain: &str, kube: Option<&kube::Client>) -> Result<RootCa, CaError> {
    let root = match &config.root {
        RootSource::Directory { dir, plug_in } => store::load_or_create(dir, plug_in.as_ref(), trust_domain)?,
        RootSource::PlugIn { files } => store::from_plug_in(files)?,
        RootSource::KubernetesSecret { namespace } => {
            let client = kube.ok_or(CaError::NoKubernetes)?;
            secret::load_or_create(client.clone(), namespace, trust_domain).await?
        }
    };
    if let Some(dir) = config.bundle_file.as_deref().and_then(std::path::Path::parent) {
        store::write_bundle(dir, &root)?;
    }
    tracing::info!(
        origin = %root.info().origin,
        fingerprint = %root.info().root_fingerprint,
        issuer = %root.info().issuer_subject,
        expires = %root.info().issuer_not_after,
        "CA root loaded"
    );
    Ok(root)
}

/// The CA: its root, its policy, and what it has done.
pub struct Ca {
    root: RootCa,
    trust_domain: String,
    lifetime: Duration,
    authenticator: Authenticator,
    snapshot: SnapshotSource,
    /// Where proxies' trust bundle is written (`<ca-dir>/ca.crt`), for `/ca`.
    bundle_file: Option<std::path::PathBuf>,
    pub stats: CaStats,
}

impl Ca {
    pub fn new(
        root: RootCa,
        trust_domain: String,
        lifetime: Duration,
        authenticator: Authenticator,
        snapshot: SnapshotSource,
    ) -> Self {
        Self { root, trust_domain, lifetime, authenticator, snapshot, bundle_file: None, stats: CaStats::default() }
    }

    /// Records where the trust bundle for proxies is written (shown at `/ca`).
    pub fn with_bundle_file(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.bundle_file = path;
        self
    }

    pub fn root(&self) -> &RootCa {
        &self.root
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The configured lifetime of the certificates it issues.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The node or waypoint a caller's credential proves (Discovery checks subscriptions with it).
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<authz::Caller, Refusal> {
        let claim = self.authenticator.authenticate(metadata).await?;
        Ok(authz::resolve_caller(claim, &(self.snapshot)())?)
    }

    /// Whether callers can prove anything at all (false without `--node-credentials` in local
    /// mode: then the CA refuses every request and Discovery cannot check subscribers).
    pub fn authenticates_callers(&self) -> bool {
        !matches!(self.authenticator, Authenticator::Nobody)
    }

    /// Authenticates the caller, authorizes the identity, signs (see the module docs).
    pub async fn sign(&self, metadata: &MetadataMap, request: &SignRequest) -> Result<SignResponse, Refusal> {
        let claim = self.authenticator.authenticate(metadata).await?;
        let snapshot = (self.snapshot)();
        let caller = authz::resolve_caller(claim, &snapshot)?;
        let authorized = authz::authorize(&caller, &request.identity, &self.trust_domain, &snapshot)?;
        let lifetime = match request.lifetime_seconds {
            0 => self.lifetime,
            asked => self.lifetime.min(Duration::from_secs(asked)),
        };
        let issued = sign::sign(&self.root, &request.csr_pem, &authorized, lifetime)?;
        let issuance = Issuance {
            requester: authorized.requester().to_owned(),
            identity: authorized.id().to_string(),
            serial: issued.serial.clone(),
            not_after: rfc3339(issued.not_after),
            issued_at: rfc3339(std::time::SystemTime::now()),
        };
        tracing::info!(
            requester = %issuance.requester,
            identity = %issuance.identity,
            serial = %issuance.serial,
            expires = %issuance.not_after,
            "certificate issued"
        );
        self.stats.issued(issuance);
        Ok(SignResponse { cert_chain_pem: issued.chain_pem, trust_bundle_pem: self.root.bundle().to_pem() })
    }

    /// What `/ca` shows.
    pub fn status(&self) -> serde_json::Value {
        let info = self.root.info();
        json!({
            "trustDomain": self.trust_domain,
            "trustBundleFile": self.bundle_file,
            "certLifetimeSeconds": self.lifetime.as_secs_f64(),
            "root": info,
            "certificatesIssued": self.stats.issued_count(),
            "lastIssuance": self.stats.last_issuance(),
        })
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        self.stats.render_metrics(out);
    }
}
