//! `networking.istio.io` ServiceEntry, as written.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::null_default;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ServicePort>,
    pub location: Option<String>,
    pub resolution: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub endpoints: Vec<WorkloadEntry>,
    pub workload_selector: Option<SeWorkloadSelector>,
    #[serde(default, deserialize_with = "null_default")]
    pub export_to: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub subject_alt_names: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub number: i64,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: String,
    pub target_port: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(default)]
    pub address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: BTreeMap<String, i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    pub locality: Option<String>,
    pub weight: Option<i64>,
    pub service_account: Option<String>,
}

/// ServiceEntry's selector is `networking.v1alpha3.WorkloadSelector` (`labels`), unlike the
/// `matchLabels` of the other kinds.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeWorkloadSelector {
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}
