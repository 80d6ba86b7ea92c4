//! AuthorizationPolicy at waypoints: which `targetRefs` policies a waypoint enforces, and their
//! L7 form (`HttpAuthorization`, `route.proto`).
//!
//! Attachment (<https://istio.io/latest/docs/ambient/usage/l7-features/#targeting-policies-or-routing-rules>
//! and the `targetRefs` field of
//! <https://istio.io/latest/docs/reference/config/security/authorization-policy/>): a targetRef
//! names an object in the policy's own namespace (validation refuses any other namespace), and
//! - a `gateway.networking.k8s.io` Gateway that is this waypoint: the policy applies to every
//!   request through it (`hostnames` empty);
//! - a Service (core group) or a `networking.istio.io` ServiceEntry bound to this waypoint
//!   ([`super::bind`]): the policy applies to requests to that service (its hostname; every host
//!   of a ServiceEntry);
//! - anything else (an unbound service, another Gateway): nothing here.
//!
//! Policies with a `selector` or no target never reach a waypoint: they are enforced by the
//! node proxy of the destination ([`crate::compile::node`]).
//!
//! Values: principals and `*` forms as for node proxies (Istio's `<td>/ns/<ns>/sa/<sa>`;
//! `serviceAccounts` and `source.serviceAccount` become the suffix `/ns/<ns>/sa/<sa>`, any
//! trust domain); header names lower case; IP condition values normalized CIDRs.
//!
//! What a waypoint cannot evaluate is applied here the way istiod applies attributes a proxy
//! cannot see (`handleRule` for ztunnel: "This will be more restrictive than requested"): a rule
//! of an ALLOW policy naming it is dropped (an ALLOW left without rules matches nothing), and it
//! is removed from DENY and AUDIT rules (which then match more); `not_enforced` says which.
//! - `connection.sni`: a waypoint receives cleartext HTTP inside HBONE; no SNI exists.
//! - `experimental.envoy.filters.*`: Envoy filter metadata Ambit does not have. These are
//!   refused with a note instead of rejecting the object: a rejected DENY policy would vanish and
//!   let its requests through.
//!
//! `requestPrincipals` and `request.auth.*` are *not* removed: Ambit has no
//! RequestAuthentication, so the waypoint evaluates them against an absent JWT exactly as Istio
//! does for a request without one (an ALLOW needing one never matches; a DENY on
//! `notRequestPrincipals: ["*"]` matches every request).

use ambit_common::{
    api::v1::{self as api, HttpConditionKey, resource::Kind, string_match},
    config::{
        Snapshot,
        model::{
            AuthorizationAction, AuthorizationPolicy, Condition, ConditionKey, Gateway, IpBlock, Operation,
            PolicyScope, Rule, Source, TargetRef,
        },
    },
};

use super::index::{ServiceView, Source as ViewSource};
use crate::compile::node::authorization::{ip_net, kind, name, service_account, string_match};

/// The `HttpAuthorization` resources of one waypoint, by name (`<namespace>/<name>`).
pub(super) fn compile(snapshot: &Snapshot, gateway: &Gateway, bound: &[&ServiceView<'_>]) -> Vec<api::Resource> {
    let mut resources: Vec<api::Resource> = snapshot
        .authorization_policies()
        .filter_map(|policy| {
            let PolicyScope::TargetRefs(refs) = &policy.scope else { return None };
            let hostnames = attachment(policy, refs, gateway, bound)?;
            Some(api::Resource { name: name(policy), kind: Some(Kind::HttpAuthorization(convert(policy, hostnames))) })
        })
        .collect();
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    resources
}

/// `Some(empty)`: every request through the waypoint; `Some(hostnames)`: requests to those
/// services; `None`: the policy is not for this waypoint.
fn attachment(
    policy: &AuthorizationPolicy,
    refs: &[TargetRef],
    gateway: &Gateway,
    bound: &[&ServiceView<'_>],
) -> Option<Vec<String>> {
    let namespace = policy.meta.namespace.as_str();
    let is_this_waypoint = |r: &TargetRef| {
        r.group == "gateway.networking.k8s.io"
            && r.kind == "Gateway"
            && r.name == gateway.meta.name
            && namespace == gateway.meta.namespace
    };
    if refs.iter().any(is_this_waypoint) {
        return Some(Vec::new());
    }
    let mut hostnames: Vec<String> = bound
        .iter()
        .filter(|service| service.namespace == namespace && refs.iter().any(|r| names(r, service)))
        .map(|service| service.hostname.clone())
        .collect();
    hostnames.sort();
    hostnames.dedup();
    (!hostnames.is_empty()).then_some(hostnames)
}

fn names(target: &TargetRef, service: &ServiceView<'_>) -> bool {
    let kind_matches = match service.source {
        ViewSource::Kubernetes(_) => matches!(target.group.as_str(), "" | "core") && target.kind == "Service",
        ViewSource::Entry(_) => target.group == "networking.istio.io" && target.kind == "ServiceEntry",
    };
    kind_matches && target.name == service.name
}

fn convert(policy: &AuthorizationPolicy, hostnames: Vec<String>) -> api::HttpAuthorization {
    let action = match policy.action {
        AuthorizationAction::Allow => api::AuthorizationAction::Allow,
        AuthorizationAction::Deny => api::AuthorizationAction::Deny,
        AuthorizationAction::Audit => api::AuthorizationAction::Audit,
    };
    let namespace = policy.meta.namespace.as_str();
    let mut not_enforced = Vec::new();
    let mut rules = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let unsupported: Vec<String> = rule
            .when
            .iter()
            .enumerate()
            .filter_map(|(j, c)| unsupported_key(&c.key).map(|why| format!("rules[{i}].when[{j}]: {why}")))
            .collect();
        let allow = action == api::AuthorizationAction::Allow;
        if allow && !unsupported.is_empty() {
            not_enforced.extend(unsupported.into_iter().map(|n| format!("{n}; rule dropped (ALLOW fails closed)")));
            continue;
        }
        not_enforced.extend(unsupported.into_iter().map(|n| format!("{n}; condition removed (DENY fails closed)")));
        rules.push(http_rule(rule, namespace));
    }
    api::HttpAuthorization {
        name: policy.meta.name.clone(),
        namespace: namespace.to_string(),
        action: action.into(),
        hostnames,
        rules,
        not_enforced,
    }
}

/// Why a waypoint cannot evaluate a `when` key; `None` when it can.
fn unsupported_key(key: &ConditionKey) -> Option<String> {
    match key {
        ConditionKey::ConnectionSni => {
            Some("connection.sni does not apply at a waypoint (cleartext HTTP inside HBONE has no SNI)".into())
        }
        ConditionKey::Experimental(k) => Some(format!("{k} is not supported by Ambit")),
        _ => None,
    }
}

fn http_rule(rule: &Rule, namespace: &str) -> api::HttpAuthorizationRule {
    api::HttpAuthorizationRule {
        from: rule.from.iter().map(|s| http_source(s, namespace)).collect(),
        to: rule.to.iter().map(http_operation).collect(),
        when: rule.when.iter().filter_map(|c| http_condition(c, namespace)).collect(),
    }
}

fn http_source(s: &Source, namespace: &str) -> api::HttpAuthorizationSource {
    let accounts = |list: &[String]| list.iter().map(|sa| service_account(sa, namespace)).collect::<Vec<_>>();
    let mut principals = matches(&s.principals);
    principals.extend(accounts(&s.service_accounts));
    let mut not_principals = matches(&s.not_principals);
    not_principals.extend(accounts(&s.not_service_accounts));
    let nets = |list: &[IpBlock]| list.iter().map(ip_net).collect();
    api::HttpAuthorizationSource {
        principals,
        not_principals,
        namespaces: matches(&s.namespaces),
        not_namespaces: matches(&s.not_namespaces),
        ip_blocks: nets(&s.ip_blocks),
        not_ip_blocks: nets(&s.not_ip_blocks),
        remote_ip_blocks: nets(&s.remote_ip_blocks),
        not_remote_ip_blocks: nets(&s.not_remote_ip_blocks),
        request_principals: matches(&s.request_principals),
        not_request_principals: matches(&s.not_request_principals),
    }
}

fn http_operation(o: &Operation) -> api::HttpAuthorizationOperation {
    api::HttpAuthorizationOperation {
        hosts: matches(&o.hosts),
        not_hosts: matches(&o.not_hosts),
        ports: o.ports.iter().copied().map(u32::from).collect(),
        not_ports: o.not_ports.iter().copied().map(u32::from).collect(),
        methods: matches(&o.methods),
        not_methods: matches(&o.not_methods),
        paths: matches(&o.paths),
        not_paths: matches(&o.not_paths),
    }
}

/// How a condition's values are written, given the policy's namespace.
type Values = fn(&[String], &str) -> Vec<api::StringMatch>;

/// `None` for the keys [`unsupported_key`] names (already accounted for by the caller).
fn http_condition(c: &Condition, namespace: &str) -> Option<api::HttpAuthorizationCondition> {
    let (key, name, values): (_, String, Values) = match &c.key {
        ConditionKey::RequestHeader(header) => {
            (HttpConditionKey::RequestHeader, header.to_ascii_lowercase(), |l, _| matches(l))
        }
        ConditionKey::SourceIp => (HttpConditionKey::SourceIp, String::new(), cidrs),
        ConditionKey::RemoteIp => (HttpConditionKey::RemoteIp, String::new(), cidrs),
        ConditionKey::DestinationIp => (HttpConditionKey::DestinationIp, String::new(), cidrs),
        ConditionKey::DestinationPort => (HttpConditionKey::DestinationPort, String::new(), decimal_ports),
        ConditionKey::SourceNamespace => (HttpConditionKey::SourceNamespace, String::new(), |l, _| matches(l)),
        ConditionKey::SourcePrincipal => (HttpConditionKey::SourcePrincipal, String::new(), |l, _| matches(l)),
        ConditionKey::SourceServiceAccount => (HttpConditionKey::SourcePrincipal, String::new(), |l, ns| {
            l.iter().map(|sa| service_account(sa, ns)).collect()
        }),
        ConditionKey::RequestAuthPrincipal => {
            (HttpConditionKey::RequestAuth, "request.auth.principal".into(), |l, _| matches(l))
        }
        ConditionKey::RequestAuthAudiences => {
            (HttpConditionKey::RequestAuth, "request.auth.audiences".into(), |l, _| matches(l))
        }
        ConditionKey::RequestAuthPresenter => {
            (HttpConditionKey::RequestAuth, "request.auth.presenter".into(), |l, _| matches(l))
        }
        ConditionKey::RequestAuthClaims(claim) => {
            (HttpConditionKey::RequestAuth, format!("request.auth.claims[{claim}]"), |l, _| matches(l))
        }
        ConditionKey::ConnectionSni | ConditionKey::Experimental(_) => return None,
    };
    Some(api::HttpAuthorizationCondition {
        key: key.into(),
        name,
        values: values(&c.values, namespace),
        not_values: values(&c.not_values, namespace),
    })
}

/// Validation guarantees these parse; `10.0.0.1` becomes `10.0.0.1/32`.
fn cidrs(list: &[String], _: &str) -> Vec<api::StringMatch> {
    list.iter()
        .map(|v| IpBlock::parse(v).map_or_else(|_| v.clone(), |b| b.to_string()))
        .map(|v| kind(string_match::Kind::Exact(v)))
        .collect()
}

fn decimal_ports(list: &[String], _: &str) -> Vec<api::StringMatch> {
    list.iter().map(|v| kind(string_match::Kind::Exact(v.trim().to_string()))).collect()
}

fn matches(list: &[String]) -> Vec<api::StringMatch> {
    list.iter().map(|v| string_match(v)).collect()
}
