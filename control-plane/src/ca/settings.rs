//! The CA's validated configuration (from flags, in [`crate::config`]): where the root comes from,
//! how callers prove their node, and how long certificates live.

use std::{path::PathBuf, time::Duration};

use serde::{Serialize, Serializer};

use super::{kubernetes::ServiceAccountRef, store::PlugInFiles};

/// The default certificate lifetime, as Istio's (`DEFAULT_WORKLOAD_CERT_TTL`).
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The shortest lifetime accepted (rotation tests use seconds).
pub const MIN_CERT_LIFETIME: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaConfig {
    pub root: RootSource,
    pub callers: CallerAuth,
    #[serde(serialize_with = "go_duration")]
    pub cert_lifetime: Duration,
    /// Where the trust bundle is written for proxies (`<ca-dir>/ca.crt`), if anywhere.
    pub bundle_file: Option<PathBuf>,
}

/// Where the root comes from (see `ca::store` and `ca::secret` for the order within each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "type")]
pub enum RootSource {
    /// Local mode: `<dir>/ca.crt`+`ca.key`, else the plug-in files, else generated into `dir`.
    Directory { dir: PathBuf, plug_in: Option<PlugInFiles> },
    /// The user's CA files, nothing persisted but the bundle.
    PlugIn { files: PlugInFiles },
    /// Kubernetes: Secret `cacerts`, else `ambit-ca` (created), in the root namespace.
    KubernetesSecret { namespace: String },
}

/// How callers of the CA (and Discovery) prove which node proxy or waypoint they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "type")]
pub enum CallerAuth {
    /// Local mode: a token per node and per waypoint (`waypoint/<ns>/<gateway>`) in this file.
    NodeCredentials { file: PathBuf },
    /// Kubernetes: TokenReview of the node proxy's or a waypoint pod's service-account token.
    TokenReview { audience: String, node_proxy: ServiceAccountRef },
    /// Nobody can (local mode without `--node-credentials`): every request is refused.
    None,
}

fn go_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    ambit_common::config::Duration::from_std(*d).serialize(s)
}
