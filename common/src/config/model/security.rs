//! Validated AuthorizationPolicy and PeerAuthentication.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{IpBlock, ObjectMeta, Selector};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuthorizationPolicy {
    pub meta: ObjectMeta,
    pub scope: PolicyScope,
    pub action: AuthorizationAction,
    /// No rules: an ALLOW policy matches nothing (so denies what it selects); `[{}]` matches all.
    pub rules: Vec<Rule>,
}

/// What a policy applies to; `selector` and `targetRef(s)` are mutually exclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyScope {
    /// Every workload in the namespace (the root namespace: the whole mesh).
    Namespace,
    Selector(Selector),
    /// `targetRef` or `targetRefs`: Services, ServiceEntries or waypoint Gateways.
    TargetRefs(Vec<TargetRef>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TargetRef {
    /// `""` (core), `networking.istio.io` or `gateway.networking.k8s.io`.
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AuthorizationAction {
    Allow,
    Deny,
    Audit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Rule {
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub ip_blocks: Vec<IpBlock>,
    pub not_ip_blocks: Vec<IpBlock>,
    pub remote_ip_blocks: Vec<IpBlock>,
    pub not_remote_ip_blocks: Vec<IpBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<u16>,
    pub not_ports: Vec<u16>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Condition {
    pub key: ConditionKey,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// The `when` keys Istio defines
/// (<https://istio.io/latest/docs/reference/config/security/conditions/>).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConditionKey {
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
    RequestAuthPrincipal,
    RequestAuthAudiences,
    RequestAuthPresenter,
    /// `request.auth.claims[iss]`: the claim name.
    RequestAuthClaims(String),
    /// `request.headers[User-Agent]`: the header name.
    RequestHeader(String),
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    /// `experimental.envoy.filters.*`, kept whole.
    Experimental(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PeerAuthentication {
    pub meta: ObjectMeta,
    pub selector: Option<Selector>,
    /// `None` for UNSET (inherit from the namespace or mesh policy).
    pub mtls: Option<MtlsMode>,
    /// Only with a selector (Istio's rule). `None` value: UNSET for that port.
    pub port_level_mtls: BTreeMap<u16, Option<MtlsMode>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MtlsMode {
    Disable,
    Permissive,
    Strict,
}
