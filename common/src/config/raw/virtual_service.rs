//! `networking.istio.io` VirtualService, as written.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Text,
    common::{Destination, Headers, Percent, StringMatch},
    null_default,
};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub gateways: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub http: Vec<HttpRoute>,
    #[serde(default, deserialize_with = "null_default")]
    pub tls: Vec<TlsRoute>,
    #[serde(default, deserialize_with = "null_default")]
    pub tcp: Vec<TcpRoute>,
    #[serde(default, deserialize_with = "null_default")]
    pub export_to: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRoute {
    pub name: Option<String>,
    #[serde(default, rename = "match", deserialize_with = "null_default")]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default, deserialize_with = "null_default")]
    pub route: Vec<HttpRouteDestination>,
    pub redirect: Option<HttpRedirect>,
    pub direct_response: Option<HttpDirectResponse>,
    pub delegate: Option<Delegate>,
    pub rewrite: Option<HttpRewrite>,
    pub timeout: Option<Text>,
    pub retries: Option<HttpRetry>,
    pub fault: Option<HttpFaultInjection>,
    pub mirror: Option<Destination>,
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer form of `mirrorPercentage`; the proto name is `mirror_percent`.
    #[serde(alias = "mirror_percent")]
    pub mirror_percent: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    pub cors_policy: Option<CorsPolicy>,
    pub headers: Option<Headers>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    #[serde(default, deserialize_with = "null_default")]
    pub headers: BTreeMap<String, Option<StringMatch>>,
    #[serde(default, deserialize_with = "null_default")]
    pub without_headers: BTreeMap<String, Option<StringMatch>>,
    #[serde(default, deserialize_with = "null_default")]
    pub query_params: BTreeMap<String, Option<StringMatch>>,
    #[serde(default)]
    pub ignore_uri_case: bool,
    pub port: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
    pub stat_prefix: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    pub weight: Option<i64>,
    pub headers: Option<Headers>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRedirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<i64>,
    pub derive_port: Option<String>,
    pub scheme: Option<String>,
    pub redirect_code: Option<i64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDirectResponse {
    pub status: i64,
    pub body: Option<HttpBody>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBody {
    pub string: Option<String>,
    /// Base64, as protobuf JSON writes `bytes`.
    pub bytes: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    pub rewrite: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRetry {
    #[serde(default)]
    pub attempts: i64,
    pub per_try_timeout: Option<Text>,
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
    pub retry_ignore_previous_hosts: Option<bool>,
    pub backoff: Option<Text>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFaultInjection {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delay {
    pub fixed_delay: Option<Text>,
    pub exponential_delay: Option<Text>,
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    pub percent: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Abort {
    pub http_status: Option<i64>,
    pub grpc_status: Option<String>,
    pub http2_error: Option<String>,
    pub percentage: Option<Percent>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    pub destination: Destination,
    pub percentage: Option<Percent>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Deprecated: exact origins (or `*`).
    #[serde(default, deserialize_with = "null_default")]
    pub allow_origin: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_origins: Vec<StringMatch>,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_methods: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_headers: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub expose_headers: Vec<String>,
    pub max_age: Option<Text>,
    pub allow_credentials: Option<bool>,
    pub unmatched_preflights: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    #[serde(default, rename = "match", deserialize_with = "null_default")]
    pub matches: Vec<L4MatchAttributes>,
    #[serde(default, deserialize_with = "null_default")]
    pub route: Vec<RouteDestination>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L4MatchAttributes {
    #[serde(default, deserialize_with = "null_default")]
    pub destination_subnets: Vec<String>,
    pub port: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}

/// Parsed so that the document is understood; validation reports TLS routes as unsupported.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRoute {
    #[serde(default, rename = "match", deserialize_with = "null_default")]
    pub matches: Vec<TlsMatchAttributes>,
    #[serde(default, deserialize_with = "null_default")]
    pub route: Vec<RouteDestination>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    #[serde(default, deserialize_with = "null_default")]
    pub sni_hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub destination_subnets: Vec<String>,
    pub port: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}
