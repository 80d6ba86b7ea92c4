//! Ambit's config model: the Istio and Kubernetes YAML users already have, parsed, validated
//! and kept as an immutable, versioned snapshot. Pure code, no IO.
//!
//! The pipeline, one module per step:
//!
//! 1. [`parse::parse_documents`] splits multi-document YAML, expands `kind: List`, and for each
//!    document picks the kind ([`Kind`]) from `apiVersion` and `kind`;
//! 2. [`raw`] deserializes it: **strictly** for Istio kinds (`deny_unknown_fields`, so a typo
//!    is an error naming the field) and **leniently** for Kubernetes kinds (unknown fields are
//!    ignored: the API server sends hundreds Ambit never reads);
//! 3. `validate` converts raw → [`model`] with `TryFrom`, checking what Istio's validation
//!    webhook checks; features Ambit does not implement (VirtualService delegation, TLS
//!    routes, CUSTOM authorization, …) parse but are rejected as "not supported by Ambit";
//! 4. [`store::ConfigStore`] keeps the last good version of every object, runs the checks that
//!    span objects ([`store::cross`]) and publishes a [`Snapshot`].
//!
//! Conventions worth knowing:
//! - an object without `metadata.namespace` is in `default` ([`DEFAULT_NAMESPACE`]), as with
//!   `kubectl apply` without `-n`; cluster-scoped kinds (Namespace) have an empty namespace;
//! - host short names resolve in the namespace of the object naming them ([`hosts`]);
//! - every error is a [`ConfigError`] that names the object, the field path and what to do.

pub mod duration;
pub mod error;
pub mod hosts;
pub mod kind;
pub mod model;
pub mod parse;
pub mod pattern;
pub mod raw;
pub mod store;
mod validate;

pub use duration::Duration;
pub use error::{ConfigError, ObjectRef, Origin};
pub use kind::Kind;
pub use model::Object;
pub use parse::{LocatedObject, ParseOutcome, Skipped, parse_documents};
pub use pattern::Pattern;
pub use store::{ConfigStore, Rejection, Snapshot};
pub use validate::DEFAULT_NAMESPACE;
