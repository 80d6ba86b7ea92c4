//! The L4 authorization decision for one connection to a local workload, with Istio's
//! semantics (<https://istio.io/latest/docs/reference/config/security/authorization-policy/>):
//!
//! 1. "If there are any DENY policies that match the request, deny the request."
//! 2. "If there are no ALLOW policies for the workload, allow the request."
//! 3. "If any of the ALLOW policies match the request, allow the request."
//! 4. "Deny the request."
//!
//! "AUDIT policies do not affect whether requests are allowed or denied": the decision only
//! reports whether one matched.
//!
//! Matching: a policy matches when one of its rules does; with no rules it never matches ("If
//! not set, the match will never occur"). A rule matches when "at least one source, one
//! operation and all conditions" do, an absent part matching anything ("An empty rule is always
//! matched"). "Fields in the source are ANDed together", the values of a field are ORed, and a
//! `not*` field matches when none of its values does. An empty source or operation matches
//! anything: the control plane leaves one when it removes L7 attributes from a DENY rule, and
//! Istio wants that rule "enforced without the HTTP rules".
//!
//! A plaintext connection has no principal and no namespace. Positive matches on them never
//! hold, not even `*` ("Presence match: `*` will match when value is not empty"); negative
//! ones always do, exactly as Envoy's `not_id` over an `authenticated` matcher and ztunnel's
//! `rbac.rs` evaluate them. Istio documents the consequence in ISTIO-SECURITY-2021-004
//! (<https://istio.io/latest/news/security/istio-security-2021-004/>): with `notNamespaces:
//! ["foo"]` "a plain text request from the namespace foo will actually be allowed". That is
//! also what makes `DENY` + `notPrincipals: ["*"]` the documented way to refuse plaintext.
//!
//! Where the proxy cannot evaluate something it fails closed, as Istio does for L7 attributes
//! ("For a DENY rule, missing attributes are treated as matches"; ALLOW rules with them are
//! omitted): a `when` key it does not know never matches in an ALLOW policy and always matches
//! in a DENY or AUDIT one; a policy whose action it does not know denies every connection.
//! The control plane never sends either; they can only come from a newer control plane.

use std::net::{IpAddr, SocketAddr};

use ambit_common::api::v1::{Authorization, AuthorizationAction, AuthorizationRule, Condition, Operation, Source};

use super::matching::{Cidr, ip_value_matches, port_value_matches, string_matches};

/// What authorization looks at in a connection to a local workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectionAttrs {
    pub(crate) source_ip: IpAddr,
    /// The peer's identity in Istio's form, `<trust domain>/ns/<ns>/sa/<sa>` (no `spiffe://`);
    /// `None` for plaintext.
    pub(crate) source_principal: Option<String>,
    /// The namespace in the peer's identity; `None` for plaintext.
    pub(crate) source_namespace: Option<String>,
    /// The original destination: the workload's address and the port the client asked for.
    pub(crate) destination_ip: IpAddr,
    pub(crate) destination_port: u16,
}

impl ConnectionAttrs {
    /// `principal` is the peer's SPIFFE id, with or without `spiffe://`; `None` (or empty) for a
    /// plaintext connection. The namespace is taken from it.
    pub(crate) fn new(source_ip: IpAddr, principal: Option<&str>, destination: SocketAddr) -> Self {
        let principal = principal.map(|p| p.strip_prefix("spiffe://").unwrap_or(p)).filter(|p| !p.is_empty());
        Self {
            source_ip,
            source_namespace: principal.and_then(namespace_of).map(str::to_owned),
            source_principal: principal.map(str::to_owned),
            destination_ip: destination.ip(),
            destination_port: destination.port(),
        }
    }
}

/// The namespace of `<trust domain>/ns/<ns>/sa/<sa>`; `None` for any other form.
fn namespace_of(principal: &str) -> Option<&str> {
    let mut parts = principal.split('/');
    let (_trust_domain, ns_tag, ns, sa_tag, _sa) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (ns_tag == "ns" && sa_tag == "sa" && !ns.is_empty() && parts.next().is_none()).then_some(ns)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow {
        /// An AUDIT policy matched: the connection record should say so.
        audited: bool,
        /// The ALLOW policy (`<namespace>/<name>`) that admitted it; `None` when none applies.
        by: Option<String>,
    },
    Deny {
        by: DenyReason,
    },
}

impl Decision {
    #[cfg(test)]
    pub(crate) fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// Why a connection was refused; the text goes into logs and connection records.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DenyReason {
    #[error("denied by DENY policy {policy}")]
    DenyPolicy { policy: String },
    #[error("no ALLOW policy matched (policies: {})", policies.join(", "))]
    NoAllowMatched { policies: Vec<String> },
    #[error(
        "authorization policy {policy} applies to the workload but is not in the configuration \
         received from the control plane; denying until it arrives"
    )]
    MissingPolicy { policy: String },
    #[error(
        "authorization policy {policy} has action {action}, which this node proxy does not know \
         (is the control plane newer than the node proxy?); denying"
    )]
    UnknownAction { policy: String, action: i32 },
    /// Not a policy: the port is bound to a waypoint and the connection did not come from it.
    #[error(transparent)]
    BypassedWaypoint(#[from] super::BypassedWaypoint),
}

/// `<namespace>/<name>`: how workloads refer to a policy, and how logs name it.
pub(crate) fn policy_name(policy: &Authorization) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

/// The decision for a connection to a workload `policies` apply to (all of them: mesh-wide,
/// namespace and selector policies, as the control plane resolved them).
pub(crate) fn authorize(policies: &[&Authorization], attrs: &ConnectionAttrs) -> Decision {
    let mut allow = Vec::new();
    let mut audit = Vec::new();
    for &policy in policies {
        match AuthorizationAction::try_from(policy.action) {
            Ok(AuthorizationAction::Deny) => {
                if Eval::new(policy, attrs).policy_matches() {
                    return Decision::Deny { by: DenyReason::DenyPolicy { policy: policy_name(policy) } };
                }
            }
            Ok(AuthorizationAction::Allow) => allow.push(policy),
            Ok(AuthorizationAction::Audit) => audit.push(policy),
            Ok(AuthorizationAction::Unspecified) | Err(_) => {
                let by = DenyReason::UnknownAction { policy: policy_name(policy), action: policy.action };
                return Decision::Deny { by };
            }
        }
    }
    let audited = audit.iter().any(|p| Eval::new(p, attrs).policy_matches());
    if allow.is_empty() {
        return Decision::Allow { audited, by: None };
    }
    match allow.iter().find(|p| Eval::new(p, attrs).policy_matches()) {
        Some(p) => Decision::Allow { audited, by: Some(policy_name(p)) },
        None => Decision::Deny {
            by: DenyReason::NoAllowMatched { policies: allow.iter().map(|p| policy_name(p)).collect() },
        },
    }
}

/// One policy evaluated against one connection.
struct Eval<'a> {
    policy: &'a Authorization,
    attrs: &'a ConnectionAttrs,
    /// What a `when` key this proxy does not know evaluates to: fail closed for the action.
    unknown_key_matches: bool,
}

impl<'a> Eval<'a> {
    fn new(policy: &'a Authorization, attrs: &'a ConnectionAttrs) -> Self {
        let unknown_key_matches = policy.action != AuthorizationAction::Allow as i32;
        Self { policy, attrs, unknown_key_matches }
    }

    fn policy_matches(&self) -> bool {
        self.policy.rules.iter().any(|rule| self.rule(rule))
    }

    fn rule(&self, rule: &AuthorizationRule) -> bool {
        (rule.from.is_empty() || rule.from.iter().any(|s| self.source(s)))
            && (rule.to.is_empty() || rule.to.iter().any(|o| self.operation(o)))
            && rule.when.iter().all(|c| self.condition(c))
    }

    fn source(&self, s: &Source) -> bool {
        let principal = self.attrs.source_principal.as_deref();
        let namespace = self.attrs.source_namespace.as_deref();
        let ip = self.attrs.source_ip;
        field(&s.principals, &s.not_principals, |m| string_matches(m, principal))
            && field(&s.namespaces, &s.not_namespaces, |m| string_matches(m, namespace))
            && field(&s.ip_blocks, &s.not_ip_blocks, |net| Cidr::from_api(net).is_some_and(|c| c.contains(ip)))
    }

    fn operation(&self, o: &Operation) -> bool {
        let port = u32::from(self.attrs.destination_port);
        field(&o.ports, &o.not_ports, |p| *p == port)
    }

    fn condition(&self, c: &Condition) -> bool {
        let a = self.attrs;
        let (values, not_values) = (&c.values, &c.not_values);
        match c.key.as_str() {
            "source.ip" => field(values, not_values, |m| ip_value_matches(m, a.source_ip)),
            "source.namespace" => field(values, not_values, |m| string_matches(m, a.source_namespace.as_deref())),
            "source.principal" => field(values, not_values, |m| string_matches(m, a.source_principal.as_deref())),
            "destination.ip" => field(values, not_values, |m| ip_value_matches(m, a.destination_ip)),
            "destination.port" => field(values, not_values, |m| port_value_matches(m, a.destination_port)),
            key => {
                tracing::debug!(
                    policy = %policy_name(self.policy),
                    key,
                    matches = self.unknown_key_matches,
                    "authorization condition on a key a node proxy cannot evaluate; failing closed"
                );
                self.unknown_key_matches
            }
        }
    }
}

/// One field and its `not` form: one of `values` matches (or there are none) and none of
/// `not_values` does.
fn field<T>(values: &[T], not_values: &[T], matches: impl Fn(&T) -> bool) -> bool {
    (values.is_empty() || values.iter().any(&matches)) && !not_values.iter().any(&matches)
}
