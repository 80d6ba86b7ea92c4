//! Raw serde types: the YAML as written, before validation.
//!
//! Istio kinds are parsed strictly: every struct has `deny_unknown_fields`, so a typo such
//! as `weigth` or `lables` is an error that names the field. Kubernetes kinds (Namespace,
//! Pod, Service, EndpointSlice, ServiceAccount, Gateway) are parsed leniently: they come from
//! the API server with hundreds of fields Ambit does not use, so unknown fields are ignored —
//! except in `metadata`, whose schema is fixed and which is strict for every kind.
//!
//! Enums, durations and numbers are kept as written (strings, wide integers) so that the
//! validation step can say what is wrong in Istio's words instead of serde's.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, Visitor},
};

pub mod common;
pub mod destination_rule;
pub mod k8s;
pub mod security;
pub mod service_entry;
pub mod virtual_service;

/// `null` in YAML means "not set" for lists and maps, as it does for the API server.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A scalar kept as text: durations (`10s`), or ports written as `"8080"` or `8080`.
/// Numbers are accepted so that `timeout: 10` reaches validation and gets a useful message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Kubernetes `IntOrString` (a Service's `targetPort`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// Object metadata; generated twice: strict for Istio kinds, lenient for Kubernetes kinds.
macro_rules! object_meta {
    ($(#[$attr:meta])* $name:ident) => {
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(rename_all = "camelCase")]
        $(#[$attr])*
        pub struct $name {
            #[serde(default)]
            pub name: Option<String>,
            /// Absent means `default`, as with `kubectl apply` (see [`crate::config`]).
            #[serde(default)]
            pub namespace: Option<String>,
            #[serde(default, deserialize_with = "null_default")]
            pub labels: BTreeMap<String, String>,
            #[serde(default, deserialize_with = "null_default")]
            pub annotations: BTreeMap<String, String>,
            #[serde(default)]
            pub uid: Option<String>,
            // Server-set fields: accepted so exported objects load, not used.
            #[serde(default)]
            pub generate_name: Option<IgnoredAny>,
            #[serde(default)]
            pub self_link: Option<IgnoredAny>,
            #[serde(default)]
            pub resource_version: Option<IgnoredAny>,
            #[serde(default)]
            pub generation: Option<IgnoredAny>,
            #[serde(default)]
            pub creation_timestamp: Option<IgnoredAny>,
            #[serde(default)]
            pub deletion_timestamp: Option<IgnoredAny>,
            #[serde(default)]
            pub deletion_grace_period_seconds: Option<IgnoredAny>,
            #[serde(default)]
            pub owner_references: Option<IgnoredAny>,
            #[serde(default)]
            pub finalizers: Option<IgnoredAny>,
            #[serde(default)]
            pub managed_fields: Option<IgnoredAny>,
            /// Removed in Kubernetes 1.25; still present in objects exported from older clusters.
            #[serde(default)]
            pub cluster_name: Option<IgnoredAny>,
        }
    };
}

object_meta!(
    /// Metadata of an Istio object: unknown fields are errors.
    #[serde(deny_unknown_fields)]
    StrictMeta
);
object_meta!(
    /// Metadata of a Kubernetes object. Also strict: `ObjectMeta`'s schema is fixed and small (the
    /// API server itself refuses unknown metadata fields under strict validation), and a typo like
    /// `lables` in a Namespace must not silently change enrollment.
    #[serde(deny_unknown_fields)]
    LooseMeta
);

impl From<StrictMeta> for LooseMeta {
    fn from(m: StrictMeta) -> Self {
        LooseMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            uid: m.uid,
            ..LooseMeta::default()
        }
    }
}

/// The envelope of every Istio object: strict, with `status` accepted and ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioObject<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: S,
    #[serde(default)]
    pub status: Option<IgnoredAny>,
}
