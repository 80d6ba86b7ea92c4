//! AuthorizationPolicy at node proxies: which policies apply to a workload, and their L4 form.
//!
//! Only policies without `targetRef(s)` reach node proxies; targeted policies are for
//! waypoints (istiod: "TargetRef is not intended for ztunnel"). A policy applies to a workload
//! when (<https://istio.io/latest/docs/reference/config/security/authorization-policy/>,
//! field `selector`):
//! - it is in the root namespace without selector: every workload in the mesh;
//! - it is in the workload's namespace without selector: every workload of that namespace;
//! - its selector matches the workload's labels and it is in the workload's namespace or in
//!   the root namespace ("if the policy is in the root namespace, the selector will
//!   additionally match with workloads in all namespaces").
//!
//! The L4 form follows istiod's conversion for ztunnel (`ambient/authorization.go`,
//! `handleRule`), so a node proxy never has to know an attribute is L7:
//! - in an ALLOW policy a rule naming any L7 attribute is dropped whole: it could never be
//!   proven to match, and dropping it only ever denies more ("rules matching HTTP attributes are
//!   omitted. This will be more restrictive than requested"); an ALLOW left with no rules
//!   matches nothing;
//! - in a DENY (and AUDIT) policy the L7 attributes are removed and the rest of the rule is
//!   kept, so it matches at least everything it would with them ("DENY policy with HTTP
//!   attributes is enforced without the HTTP rules");
//! - either way `has_l7` is set, for the proxy to log; the rules are already final.
//!
//! L7 attributes, as istiod counts them: `requestPrincipals`, `remoteIpBlocks` (and their
//! `not` forms), `hosts`, `methods`, `paths` (and `not` forms), and every `when` key other than
//! `source.ip`, `source.namespace`, `source.principal`, `destination.ip`, `destination.port`.
//! `remoteIpBlocks` and `remote.ip` are L7 on purpose: they mean the original client's address
//! from `X-Forwarded-For`/PROXY protocol, which a node proxy cannot see. Merging them into
//! `ipBlocks` would make a DENY aimed at an external client match the ingress gateway's address
//! instead — and silently let that client through.
//!
//! Value forms: principals stay in Istio's form without `spiffe://`
//! (`cluster.local/ns/default/sa/sleep`); `serviceAccounts` become principals matched by the
//! suffix `/ns/<ns>/sa/<sa>` (any trust domain, as ztunnel's service-account match);
//! `"*"` forms become exact/prefix/suffix/any, where `any` means "present" (so
//! `notPrincipals: ["*"]` matches connections without a peer identity). `when` values on IP
//! keys are CIDR strings normalized to `address/prefix`, on `destination.port` decimal
//! numbers, both as `exact`.

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{self as api, resource::Kind, string_match},
    config::{
        Snapshot,
        model::{
            AuthorizationAction, AuthorizationPolicy, Condition, ConditionKey, IpBlock, Labels, Operation, PolicyScope,
            Rule, Source,
        },
    },
};

use super::{ip_bytes, resource};

/// Policies node proxies enforce, by namespace.
pub(super) struct NodePolicies<'a> {
    root: &'a str,
    by_namespace: BTreeMap<&'a str, Vec<&'a AuthorizationPolicy>>,
}

impl<'a> NodePolicies<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, root: &'a str) -> Self {
        let mut by_namespace: BTreeMap<&str, Vec<_>> = BTreeMap::new();
        for policy in snapshot.authorization_policies().filter(|p| for_node_proxies(p)) {
            by_namespace.entry(policy.meta.namespace.as_str()).or_default().push(policy);
        }
        Self { root, by_namespace }
    }

    /// The policies that apply to a workload, by name (`<namespace>/<name>`, sorted).
    pub(super) fn for_workload(&self, namespace: &str, labels: &Labels) -> Applicable {
        let mut scopes = vec![self.root];
        if namespace != self.root {
            scopes.push(namespace);
        }
        let policies: Vec<&AuthorizationPolicy> = scopes
            .into_iter()
            .filter_map(|ns| self.by_namespace.get(ns))
            .flatten()
            .filter(|p| match &p.scope {
                PolicyScope::Namespace => true,
                PolicyScope::Selector(selector) => selector.matches(labels),
                PolicyScope::TargetRefs(_) => false,
            })
            .copied()
            .collect();
        let mut names: Vec<String> = policies.iter().map(|p| name(p)).collect();
        names.sort();
        Applicable { names, has_allow: policies.iter().any(|p| p.action == AuthorizationAction::Allow) }
    }
}

/// The policies that apply to one workload.
pub(super) struct Applicable {
    pub(super) names: Vec<String>,
    /// At least one is an ALLOW policy: the workload denies what no ALLOW policy matches.
    pub(super) has_allow: bool,
}

fn for_node_proxies(policy: &AuthorizationPolicy) -> bool {
    !matches!(policy.scope, PolicyScope::TargetRefs(_))
}

pub(in crate::compile) fn name(policy: &AuthorizationPolicy) -> String {
    format!("{}/{}", policy.meta.namespace, policy.meta.name)
}

/// Every policy a node proxy may enforce, by resource name.
pub(super) fn compile(snapshot: &Snapshot) -> BTreeMap<String, api::Resource> {
    snapshot
        .authorization_policies()
        .filter(|p| for_node_proxies(p))
        .map(|p| (name(p), resource(name(p), Kind::Authorization(convert(p)))))
        .collect()
}

fn convert(policy: &AuthorizationPolicy) -> api::Authorization {
    let action = match policy.action {
        AuthorizationAction::Allow => api::AuthorizationAction::Allow,
        AuthorizationAction::Deny => api::AuthorizationAction::Deny,
        AuthorizationAction::Audit => api::AuthorizationAction::Audit,
    };
    let mut has_l7 = false;
    let mut rules = Vec::new();
    for rule in &policy.rules {
        let l7 = rule_has_l7(rule);
        has_l7 |= l7;
        if l7 && action == api::AuthorizationAction::Allow {
            continue;
        }
        rules.push(l4_rule(rule, &policy.meta.namespace));
    }
    api::Authorization {
        name: policy.meta.name.clone(),
        namespace: policy.meta.namespace.clone(),
        action: action.into(),
        rules,
        has_l7,
    }
}

fn rule_has_l7(rule: &Rule) -> bool {
    let source = |s: &Source| {
        !(s.request_principals.is_empty()
            && s.not_request_principals.is_empty()
            && s.remote_ip_blocks.is_empty()
            && s.not_remote_ip_blocks.is_empty())
    };
    let operation = |o: &Operation| {
        !(o.hosts.is_empty()
            && o.not_hosts.is_empty()
            && o.methods.is_empty()
            && o.not_methods.is_empty()
            && o.paths.is_empty()
            && o.not_paths.is_empty())
    };
    rule.from.iter().any(source) || rule.to.iter().any(operation) || rule.when.iter().any(|c| l4_key(&c.key).is_none())
}

fn l4_rule(rule: &Rule, namespace: &str) -> api::AuthorizationRule {
    api::AuthorizationRule {
        from: rule.from.iter().map(|s| l4_source(s, namespace)).collect(),
        to: rule
            .to
            .iter()
            .map(|o| api::Operation {
                ports: o.ports.iter().copied().map(u32::from).collect(),
                not_ports: o.not_ports.iter().copied().map(u32::from).collect(),
            })
            .collect(),
        when: rule.when.iter().filter_map(l4_condition).collect(),
    }
}

fn l4_source(s: &Source, namespace: &str) -> api::Source {
    let accounts = |list: &[String]| list.iter().map(|sa| service_account(sa, namespace)).collect::<Vec<_>>();
    let mut principals = matches(&s.principals);
    principals.extend(accounts(&s.service_accounts));
    let mut not_principals = matches(&s.not_principals);
    not_principals.extend(accounts(&s.not_service_accounts));
    api::Source {
        principals,
        not_principals,
        namespaces: matches(&s.namespaces),
        not_namespaces: matches(&s.not_namespaces),
        ip_blocks: s.ip_blocks.iter().map(ip_net).collect(),
        not_ip_blocks: s.not_ip_blocks.iter().map(ip_net).collect(),
    }
}

/// `sa` (in the policy's namespace) or `ns/sa`, as a principal suffix.
pub(in crate::compile) fn service_account(value: &str, namespace: &str) -> api::StringMatch {
    let (ns, sa) = value.split_once('/').unwrap_or((namespace, value));
    kind(string_match::Kind::Suffix(format!("/ns/{ns}/sa/{sa}")))
}

/// The `when` keys a node proxy evaluates, as the API names them.
fn l4_key(key: &ConditionKey) -> Option<&'static str> {
    Some(match key {
        ConditionKey::SourceIp => "source.ip",
        ConditionKey::SourceNamespace => "source.namespace",
        ConditionKey::SourcePrincipal => "source.principal",
        ConditionKey::DestinationIp => "destination.ip",
        ConditionKey::DestinationPort => "destination.port",
        _ => return None,
    })
}

fn l4_condition(c: &Condition) -> Option<api::Condition> {
    let key = l4_key(&c.key)?;
    let values = |list: &[String]| -> Vec<api::StringMatch> {
        match c.key {
            ConditionKey::SourceIp | ConditionKey::DestinationIp => list
                .iter()
                // Validation guarantees these parse; normalize `10.0.0.1` to `10.0.0.1/32`.
                .map(|v| IpBlock::parse(v).map_or_else(|_| v.clone(), |b| b.to_string()))
                .map(|v| kind(string_match::Kind::Exact(v)))
                .collect(),
            ConditionKey::DestinationPort => {
                list.iter().map(|v| kind(string_match::Kind::Exact(v.trim().to_string()))).collect()
            }
            _ => matches(list),
        }
    };
    Some(api::Condition { key: key.to_string(), values: values(&c.values), not_values: values(&c.not_values) })
}

fn matches(list: &[String]) -> Vec<api::StringMatch> {
    list.iter().map(|v| string_match(v)).collect()
}

/// Istio's `*` forms, checked in istiod's order (`stringToMatch`).
pub(in crate::compile) fn string_match(value: &str) -> api::StringMatch {
    kind(if value == "*" {
        string_match::Kind::Any(true)
    } else if let Some(suffix) = value.strip_prefix('*') {
        string_match::Kind::Suffix(suffix.to_string())
    } else if let Some(prefix) = value.strip_suffix('*') {
        string_match::Kind::Prefix(prefix.to_string())
    } else {
        string_match::Kind::Exact(value.to_string())
    })
}

pub(in crate::compile) fn kind(kind: string_match::Kind) -> api::StringMatch {
    api::StringMatch { kind: Some(kind) }
}

pub(in crate::compile) fn ip_net(block: &IpBlock) -> api::IpNet {
    api::IpNet { address: ip_bytes(block.addr), prefix_len: u32::from(block.prefix_len) }
}
