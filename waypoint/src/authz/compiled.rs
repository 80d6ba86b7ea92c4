//! One `HttpAuthorization`, compiled: matchers parsed once, then evaluated per request.

use std::net::IpAddr;

use ambit_common::api::v1::{
    AuthorizationAction, HttpAuthorization, HttpAuthorizationCondition, HttpAuthorizationOperation,
    HttpAuthorizationRule, HttpAuthorizationSource, HttpConditionKey, IpNet, StringMatch, string_match,
};

use super::{AuthzError, AuthzRequest};
use crate::route::Subnet;

pub(super) struct Policy {
    /// `<namespace>/<name>`.
    pub(super) name: String,
    pub(super) action: AuthorizationAction,
    hostnames: Vec<String>,
    rules: Vec<Rule>,
    pub(super) not_enforced: Vec<String>,
}

impl Policy {
    pub(super) fn compile(policy: &HttpAuthorization) -> Result<Self, AuthzError> {
        let name = format!("{}/{}", policy.namespace, policy.name);
        let action = match AuthorizationAction::try_from(policy.action) {
            Ok(action @ (AuthorizationAction::Allow | AuthorizationAction::Deny | AuthorizationAction::Audit)) => {
                action
            }
            Ok(AuthorizationAction::Unspecified) | Err(_) => {
                return Err(AuthzError::UnknownAction { policy: name, action: policy.action });
            }
        };
        let invalid = |field: String, reason: String| AuthzError::Invalid { policy: name.clone(), field, reason };
        let rules = policy
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                Rule::compile(rule).map_err(|(field, reason)| invalid(format!("rules[{i}].{field}"), reason))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { name, action, hostnames: policy.hostnames.clone(), rules, not_enforced: policy.not_enforced.clone() })
    }

    /// `service`: `None` for workload-addressed traffic, which only policies without
    /// `hostnames` (attached to the waypoint itself) see.
    pub(super) fn applies_to(&self, service: Option<&str>) -> bool {
        self.hostnames.is_empty() || service.is_some_and(|s| self.hostnames.iter().any(|h| h == s))
    }

    /// No rules: never ("If not set, the match will never occur").
    pub(super) fn matches(&self, request: &AuthzRequest<'_>) -> bool {
        self.rules.iter().any(|rule| rule.matches(request))
    }
}

/// Where in a rule something is wrong, and why.
type FieldError = (String, String);

struct Rule {
    from: Vec<Source>,
    to: Vec<Operation>,
    when: Vec<Condition>,
}

impl Rule {
    fn compile(rule: &HttpAuthorizationRule) -> Result<Self, FieldError> {
        let from = rule.from.iter().enumerate().map(|(i, s)| Source::compile(s).map_err(at(format!("from[{i}]"))));
        let when = rule.when.iter().enumerate().map(|(i, c)| Condition::compile(c).map_err(at(format!("when[{i}]"))));
        Ok(Self {
            from: from.collect::<Result<_, _>>()?,
            to: rule.to.iter().map(Operation::compile).collect(),
            when: when.collect::<Result<_, _>>()?,
        })
    }

    fn matches(&self, request: &AuthzRequest<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(request)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(request)))
            && self.when.iter().all(|c| c.matches(request))
    }
}

fn at(prefix: String) -> impl Fn(FieldError) -> FieldError {
    move |(field, reason)| (format!("{prefix}.{field}"), reason)
}

/// A field and its `not` form.
struct Field<T> {
    values: Vec<T>,
    not_values: Vec<T>,
}

impl<T> Field<T> {
    fn holds(&self, matches: impl Fn(&T) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(&matches)) && !self.not_values.iter().any(&matches)
    }
}

fn strings(values: &[StringMatch], not_values: &[StringMatch], fold_case: bool) -> Field<Matcher> {
    let compile = |list: &[StringMatch]| list.iter().map(|m| Matcher::compile(m, fold_case)).collect();
    Field { values: compile(values), not_values: compile(not_values) }
}

fn subnets(name: &str, values: &[IpNet], not_values: &[IpNet]) -> Result<Field<Subnet>, FieldError> {
    let compile = |field: String, list: &[IpNet]| {
        list.iter()
            .enumerate()
            .map(|(i, net)| Subnet::compile(net).map_err(|reason| (format!("{field}[{i}]"), reason)))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Field { values: compile(name.to_string(), values)?, not_values: compile(format!("not_{name}"), not_values)? })
}

struct Source {
    principals: Field<Matcher>,
    namespaces: Field<Matcher>,
    ip_blocks: Field<Subnet>,
    remote_ip_blocks: Field<Subnet>,
    request_principals: Field<Matcher>,
}

impl Source {
    fn compile(s: &HttpAuthorizationSource) -> Result<Self, FieldError> {
        Ok(Self {
            principals: strings(&s.principals, &s.not_principals, false),
            namespaces: strings(&s.namespaces, &s.not_namespaces, false),
            ip_blocks: subnets("ip_blocks", &s.ip_blocks, &s.not_ip_blocks)?,
            remote_ip_blocks: subnets("remote_ip_blocks", &s.remote_ip_blocks, &s.not_remote_ip_blocks)?,
            request_principals: strings(&s.request_principals, &s.not_request_principals, false),
        })
    }

    fn matches(&self, request: &AuthzRequest<'_>) -> bool {
        let peer = request.view.source();
        let (principal, namespace) = identity(request);
        self.principals.holds(|m| m.holds(principal))
            && self.namespaces.holds(|m| m.holds(namespace))
            && self.ip_blocks.holds(|net| net.contains(peer.address))
            && self.remote_ip_blocks.holds(|net| net.contains(request.remote))
            && self.request_principals.holds(|m| m.holds(None))
    }
}

/// The peer's principal in Istio's form (no `spiffe://`) and its namespace; `None` without one.
fn identity<'r>(request: &'r AuthzRequest<'_>) -> (Option<&'r str>, Option<&'r str>) {
    match &request.view.source().identity {
        Some(id) => (Some(id.as_str().strip_prefix("spiffe://").unwrap_or(id.as_str())), Some(id.namespace())),
        None => (None, None),
    }
}

struct Operation {
    hosts: Field<Matcher>,
    ports: Field<u32>,
    methods: Field<Matcher>,
    paths: Field<Matcher>,
}

impl Operation {
    fn compile(o: &HttpAuthorizationOperation) -> Self {
        Self {
            hosts: strings(&o.hosts, &o.not_hosts, true),
            ports: Field { values: o.ports.clone(), not_values: o.not_ports.clone() },
            methods: strings(&o.methods, &o.not_methods, false),
            paths: strings(&o.paths, &o.not_paths, false),
        }
    }

    fn matches(&self, request: &AuthzRequest<'_>) -> bool {
        let view = request.view;
        let port = u32::from(request.destination.port());
        self.hosts.holds(|m| m.holds(Some(view.authority())))
            && self.ports.holds(|p| *p == port)
            && self.methods.holds(|m| m.holds(Some(view.method())))
            && self.paths.holds(|m| m.holds(Some(view.path())))
    }
}

enum Condition {
    Header {
        name: String,
        field: Field<Matcher>,
    },
    SourceIp(Field<Subnet>),
    RemoteIp(Field<Subnet>),
    DestinationIp(Field<Subnet>),
    DestinationPort(Field<u16>),
    SourceNamespace(Field<Matcher>),
    SourcePrincipal(Field<Matcher>),
    /// `request.auth.*`: never present (no JWT in Ambit).
    RequestAuth(Field<Matcher>),
}

impl Condition {
    fn compile(c: &HttpAuthorizationCondition) -> Result<Self, FieldError> {
        let text = || strings(&c.values, &c.not_values, false);
        Ok(match HttpConditionKey::try_from(c.key) {
            Ok(HttpConditionKey::RequestHeader) if !c.name.is_empty() => {
                Self::Header { name: c.name.to_ascii_lowercase(), field: text() }
            }
            Ok(HttpConditionKey::RequestHeader) => {
                return Err(("name".into(), "a header condition needs a name".into()));
            }
            Ok(HttpConditionKey::SourceIp) => Self::SourceIp(cidr_field(c)?),
            Ok(HttpConditionKey::RemoteIp) => Self::RemoteIp(cidr_field(c)?),
            Ok(HttpConditionKey::DestinationIp) => Self::DestinationIp(cidr_field(c)?),
            Ok(HttpConditionKey::DestinationPort) => Self::DestinationPort(port_field(c)?),
            Ok(HttpConditionKey::SourceNamespace) => Self::SourceNamespace(text()),
            Ok(HttpConditionKey::SourcePrincipal) => Self::SourcePrincipal(text()),
            Ok(HttpConditionKey::RequestAuth) => Self::RequestAuth(text()),
            Ok(HttpConditionKey::Unspecified) | Err(_) => {
                return Err(("key".into(), format!("unknown condition key {} (is the control plane newer?)", c.key)));
            }
        })
    }

    fn matches(&self, request: &AuthzRequest<'_>) -> bool {
        let (principal, namespace) = identity(request);
        match self {
            Self::Header { name, field } => {
                let value = request.view.header(name);
                field.holds(|m| m.holds(value.as_deref()))
            }
            Self::SourceIp(field) => field.holds(|net| net.contains(request.view.source().address)),
            Self::RemoteIp(field) => field.holds(|net| net.contains(request.remote)),
            Self::DestinationIp(field) => field.holds(|net| net.contains(request.destination.ip())),
            Self::DestinationPort(field) => field.holds(|p| *p == request.destination.port()),
            Self::SourceNamespace(field) => field.holds(|m| m.holds(namespace)),
            Self::SourcePrincipal(field) => field.holds(|m| m.holds(principal)),
            Self::RequestAuth(field) => field.holds(|m| m.holds(None)),
        }
    }
}

/// IP condition values: `exact` CIDRs, `address/prefix` (a bare address is a host).
fn cidr_field(c: &HttpAuthorizationCondition) -> Result<Field<Subnet>, FieldError> {
    let compile = |field: &str, list: &[StringMatch]| {
        list.iter()
            .enumerate()
            .map(|(i, m)| {
                let at = || format!("{field}[{i}]");
                let Some(string_match::Kind::Exact(text)) = &m.kind else {
                    return Err((at(), "an address condition needs an exact CIDR".into()));
                };
                cidr(text).map_err(|reason| (at(), reason))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Field { values: compile("values", &c.values)?, not_values: compile("not_values", &c.not_values)? })
}

fn cidr(text: &str) -> Result<Subnet, String> {
    let (address, len) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix_len =
        if len.is_empty() { max } else { len.parse().map_err(|_| format!("{text:?}: bad prefix length"))? };
    let address = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    Subnet::compile(&IpNet { address, prefix_len }).map_err(|reason| format!("{text:?}: {reason}"))
}

fn port_field(c: &HttpAuthorizationCondition) -> Result<Field<u16>, FieldError> {
    let compile = |field: &str, list: &[StringMatch]| {
        list.iter()
            .enumerate()
            .map(|(i, m)| match &m.kind {
                Some(string_match::Kind::Exact(text)) => {
                    text.trim().parse::<u16>().map_err(|_| (format!("{field}[{i}]"), format!("{text:?} is not a port")))
                }
                _ => Err((format!("{field}[{i}]"), "a port condition needs an exact port".into())),
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Field { values: compile("values", &c.values)?, not_values: compile("not_values", &c.not_values)? })
}

/// Istio's string forms. `Any` is "present and not empty"; a match message without a form (from
/// a newer control plane) never matches, which fails closed in ALLOW rules and in `not` lists.
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
    Never,
    /// For `hosts`: the same forms ignoring ASCII case (the expected text is lower case).
    Folded(Box<Matcher>),
}

impl Matcher {
    fn compile(m: &StringMatch, fold_case: bool) -> Self {
        let fold = |s: &str| if fold_case { s.to_ascii_lowercase() } else { s.to_string() };
        let plain = match &m.kind {
            Some(string_match::Kind::Exact(s)) => Self::Exact(fold(s)),
            Some(string_match::Kind::Prefix(s)) => Self::Prefix(fold(s)),
            Some(string_match::Kind::Suffix(s)) => Self::Suffix(fold(s)),
            Some(string_match::Kind::Any(_)) => Self::Any,
            None => Self::Never,
        };
        if fold_case { Self::Folded(Box::new(plain)) } else { plain }
    }

    fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return false };
        match self {
            Self::Exact(expected) => value == expected,
            Self::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => value.ends_with(suffix.as_str()),
            Self::Any => true,
            Self::Never => false,
            Self::Folded(inner) => inner.holds_ignoring_case(value),
        }
    }

    /// As `holds` for a non-empty value, ignoring ASCII case: the expected text is already lower
    /// case, so comparing in place needs no lower-cased copy of the value per request.
    fn holds_ignoring_case(&self, value: &str) -> bool {
        let fold_eq = |part: Option<&str>, expected: &str| part.is_some_and(|p| p.eq_ignore_ascii_case(expected));
        match self {
            Self::Exact(expected) => value.eq_ignore_ascii_case(expected),
            Self::Prefix(prefix) => fold_eq(value.get(..prefix.len()), prefix),
            Self::Suffix(suffix) => {
                fold_eq(value.len().checked_sub(suffix.len()).and_then(|at| value.get(at..)), suffix)
            }
            Self::Any => true,
            Self::Never => false,
            Self::Folded(inner) => inner.holds_ignoring_case(value),
        }
    }
}
