//! Label keys and values Ambit shares with Istio, so users keep the YAML they have.

/// Namespace label that enrolls every pod in the namespace, and pod label that opts one out.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// `istio.io/dataplane-mode=ambient` on a namespace enrolls its pods.
pub const DATAPLANE_MODE_AMBIENT: &str = "ambient";
/// `istio.io/dataplane-mode=none` on a pod keeps it out of the mesh.
pub const DATAPLANE_MODE_NONE: &str = "none";
