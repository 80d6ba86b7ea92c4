//! `security.istio.io` AuthorizationPolicy and PeerAuthentication, as written.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, Visitor},
};

use super::{
    Text,
    common::{PolicyTargetReference, WorkloadSelector},
    null_default,
};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(default, deserialize_with = "null_default")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `None` when absent; `Some(vec![])` for `rules: []` (Istio treats both as "no rules").
    pub rules: Option<Vec<Rule>>,
    pub action: Option<String>,
    pub provider: Option<ExtensionProvider>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, deserialize_with = "null_default")]
    pub from: Vec<RuleFrom>,
    #[serde(default, deserialize_with = "null_default")]
    pub to: Vec<RuleTo>,
    #[serde(default, deserialize_with = "null_default")]
    pub when: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    #[serde(default, deserialize_with = "null_default")]
    pub principals: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_principals: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub request_principals: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_request_principals: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub namespaces: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_namespaces: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub service_accounts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_service_accounts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub ip_blocks: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_ip_blocks: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_remote_ip_blocks: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_hosts: Vec<String>,
    /// Strings in Istio's API (`"8080"`); plain numbers are accepted too.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<Text>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_ports: Vec<Text>,
    #[serde(default, deserialize_with = "null_default")]
    pub methods: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_methods: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_paths: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default, deserialize_with = "null_default")]
    pub values: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub not_values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<MutualTls>,
    /// `None` when absent, so that `portLevelMtls: {}` can be told apart (Istio rejects it).
    pub port_level_mtls: Option<BTreeMap<PortKey, MutualTls>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualTls {
    pub mode: Option<String>,
}

/// A map key that is a port: YAML writes `8080:`, JSON writes `"8080":`; both are accepted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortKey(pub String);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
