//! AuthorizationPolicy and PeerAuthentication → model.

use std::collections::BTreeMap;

use super::{istio_meta, port, selector, unsupported};
use crate::config::{
    error::{ConfigError, FieldResult, Path},
    kind::Kind,
    model::{
        AuthorizationAction, AuthorizationPolicy, Condition, ConditionKey, IpBlock, MtlsMode, ObjectMeta, Operation,
        PeerAuthentication, PolicyScope, Rule, Source, TargetRef,
    },
    raw::{IstioObject, Text, common::PolicyTargetReference, security as rs},
};

impl TryFrom<IstioObject<rs::AuthorizationPolicySpec>> for AuthorizationPolicy {
    type Error = ConfigError;
    fn try_from(raw: IstioObject<rs::AuthorizationPolicySpec>) -> Result<Self, ConfigError> {
        let info = istio_meta(Kind::AuthorizationPolicy, raw.metadata)?;
        authorization_policy(info.meta, &raw.spec).map_err(|e| e.for_object(&info.object))
    }
}

fn authorization_policy(meta: ObjectMeta, spec: &rs::AuthorizationPolicySpec) -> FieldResult<AuthorizationPolicy> {
    let at = Path::root("spec");
    let scope = scope(spec, &at)?;
    let action = match spec.action.as_deref().unwrap_or("ALLOW") {
        "ALLOW" => AuthorizationAction::Allow,
        "DENY" => AuthorizationAction::Deny,
        "AUDIT" => AuthorizationAction::Audit,
        "CUSTOM" => {
            if spec.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                return Err(at
                    .key("provider")
                    .key("name")
                    .err("action CUSTOM needs provider.name (an extension provider)"));
            }
            return Err(at
                .key("action")
                .err(unsupported("action CUSTOM (external authorization)", "use ALLOW or DENY")));
        }
        other => return Err(at.key("action").err(format!("{other:?} is not one of ALLOW, DENY, AUDIT, CUSTOM"))),
    };
    if spec.provider.is_some() {
        return Err(at.key("provider").err("provider is only used with action CUSTOM; remove it"));
    }
    if action == AuthorizationAction::Deny && spec.rules.is_none() {
        return Err(at
            .key("rules")
            .err("a DENY policy without rules never matches; add an empty rule `{}` to deny every request"));
    }
    let rules = spec
        .rules
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| rule(r, &at.key("rules").index(i)))
        .collect::<FieldResult<_>>()?;
    Ok(AuthorizationPolicy { meta, scope, action, rules })
}

fn scope(spec: &rs::AuthorizationPolicySpec, at: &Path) -> FieldResult<PolicyScope> {
    let set = [
        ("selector", spec.selector.is_some()),
        ("targetRef", spec.target_ref.is_some()),
        ("targetRefs", !spec.target_refs.is_empty()),
    ];
    super::at_most_one(at, &set, "a policy selects workloads or targets resources, not both")?;
    if let Some(s) = &spec.selector {
        return Ok(match selector(&s.match_labels, &at.key("selector").key("matchLabels"))? {
            Some(sel) => PolicyScope::Selector(sel),
            None => PolicyScope::Namespace,
        });
    }
    let refs: Vec<(Path, &PolicyTargetReference)> = match &spec.target_ref {
        Some(r) => vec![(at.key("targetRef"), r)],
        None => spec.target_refs.iter().enumerate().map(|(i, r)| (at.key("targetRefs").index(i), r)).collect(),
    };
    if refs.is_empty() {
        return Ok(PolicyScope::Namespace);
    }
    refs.into_iter().map(|(at, r)| target_ref(r, &at)).collect::<FieldResult<_>>().map(PolicyScope::TargetRefs)
}

/// Istio allows Services, ServiceEntries and (waypoint) Gateways, in the policy's namespace.
pub(super) fn target_ref(r: &PolicyTargetReference, at: &Path) -> FieldResult<TargetRef> {
    if r.name.is_empty() {
        return Err(at.key("name").err("targetRef needs a name"));
    }
    if r.namespace.as_ref().is_some_and(|n| !n.is_empty()) {
        return Err(at
            .key("namespace")
            .err("targetRef namespace must not be set; cross-namespace references are not supported"));
    }
    let allowed = matches!(
        (r.group.as_str(), r.kind.as_str()),
        ("" | "core", "Service") | ("networking.istio.io", "ServiceEntry") | ("gateway.networking.k8s.io", "Gateway")
    );
    if !allowed {
        return Err(at.err(format!(
            "targetRef must be a Service, networking.istio.io ServiceEntry or gateway.networking.k8s.io Gateway, not {}/{}",
            r.group, r.kind
        )));
    }
    Ok(TargetRef { group: r.group.clone(), kind: r.kind.clone(), name: r.name.clone() })
}

fn rule(raw: &rs::Rule, at: &Path) -> FieldResult<Rule> {
    let mut out = Rule::default();
    for (i, f) in raw.from.iter().enumerate() {
        let at = at.key("from").index(i);
        let src = f.source.as_ref().ok_or_else(|| at.key("source").err("from needs a source"))?;
        out.from.push(source(src, &at.key("source"))?);
    }
    for (i, t) in raw.to.iter().enumerate() {
        let at = at.key("to").index(i);
        let op = t.operation.as_ref().ok_or_else(|| at.key("operation").err("to needs an operation"))?;
        out.to.push(operation(op, &at.key("operation"))?);
    }
    for (i, c) in raw.when.iter().enumerate() {
        out.when.push(condition(c, &at.key("when").index(i))?);
    }
    Ok(out)
}

fn strings(list: &[String], at: &Path, field: &str) -> FieldResult<Vec<String>> {
    if let Some(i) = list.iter().position(String::is_empty) {
        return Err(at.key(field).index(i).err("empty values are not allowed"));
    }
    Ok(list.to_vec())
}

fn blocks(list: &[String], at: &Path, field: &str) -> FieldResult<Vec<IpBlock>> {
    super::ip_blocks(list, &at.key(field))
}

fn source(s: &rs::Source, at: &Path) -> FieldResult<Source> {
    let out = Source {
        principals: strings(&s.principals, at, "principals")?,
        not_principals: strings(&s.not_principals, at, "notPrincipals")?,
        request_principals: strings(&s.request_principals, at, "requestPrincipals")?,
        not_request_principals: strings(&s.not_request_principals, at, "notRequestPrincipals")?,
        namespaces: strings(&s.namespaces, at, "namespaces")?,
        not_namespaces: strings(&s.not_namespaces, at, "notNamespaces")?,
        service_accounts: strings(&s.service_accounts, at, "serviceAccounts")?,
        not_service_accounts: strings(&s.not_service_accounts, at, "notServiceAccounts")?,
        ip_blocks: blocks(&s.ip_blocks, at, "ipBlocks")?,
        not_ip_blocks: blocks(&s.not_ip_blocks, at, "notIpBlocks")?,
        remote_ip_blocks: blocks(&s.remote_ip_blocks, at, "remoteIpBlocks")?,
        not_remote_ip_blocks: blocks(&s.not_remote_ip_blocks, at, "notRemoteIpBlocks")?,
    };
    if out == Source::default() {
        return Err(at.err("source must not be empty"));
    }
    let by_account = !out.service_accounts.is_empty() || !out.not_service_accounts.is_empty();
    let by_identity = !(out.principals.is_empty()
        && out.not_principals.is_empty()
        && out.namespaces.is_empty()
        && out.not_namespaces.is_empty());
    if by_account && by_identity {
        return Err(at.err("serviceAccounts cannot be combined with principals or namespaces"));
    }
    Ok(out)
}

fn ports(list: &[Text], at: &Path) -> FieldResult<Vec<u16>> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let n = t.0.parse::<i64>().map_err(|_| at.index(i).err(format!("port {:?} is not a number", t.0)))?;
            port(n, &at.index(i))
        })
        .collect()
}

fn operation(o: &rs::Operation, at: &Path) -> FieldResult<Operation> {
    let out = Operation {
        hosts: strings(&o.hosts, at, "hosts")?,
        not_hosts: strings(&o.not_hosts, at, "notHosts")?,
        ports: ports(&o.ports, &at.key("ports"))?,
        not_ports: ports(&o.not_ports, &at.key("notPorts"))?,
        methods: strings(&o.methods, at, "methods")?,
        not_methods: strings(&o.not_methods, at, "notMethods")?,
        paths: strings(&o.paths, at, "paths")?,
        not_paths: strings(&o.not_paths, at, "notPaths")?,
    };
    if out == Operation::default() {
        return Err(at.err("operation must not be empty"));
    }
    Ok(out)
}

fn condition(c: &rs::Condition, at: &Path) -> FieldResult<Condition> {
    let key = condition_key(&c.key).map_err(|e| at.key("key").err(e))?;
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(at.err(format!("condition {:?} needs values or notValues", c.key)));
    }
    for (field, list) in [("values", &c.values), ("notValues", &c.not_values)] {
        strings(list, at, field)?;
        match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                blocks(list, at, field)?;
            }
            ConditionKey::DestinationPort => {
                let texts: Vec<Text> = list.iter().map(|v| Text(v.clone())).collect();
                ports(&texts, &at.key(field))?;
            }
            _ => {}
        }
    }
    Ok(Condition { key, values: c.values.clone(), not_values: c.not_values.clone() })
}

/// The keys of <https://istio.io/latest/docs/reference/config/security/conditions/>.
fn condition_key(key: &str) -> Result<ConditionKey, String> {
    let bracketed = |prefix: &str| -> Option<Result<String, String>> {
        let inner = key.strip_prefix(prefix)?;
        Some(match inner.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(format!("bad key {key:?}: write it as {prefix}[name]")),
        })
    };
    Ok(match key {
        "" => return Err("key must not be empty".into()),
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.namespace" => ConditionKey::SourceNamespace,
        "source.principal" => ConditionKey::SourcePrincipal,
        "source.serviceAccount" => ConditionKey::SourceServiceAccount,
        "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
        "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
        "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        k if k.starts_with("experimental.envoy.filters.") => ConditionKey::Experimental(k.to_string()),
        _ => {
            if let Some(name) = bracketed("request.auth.claims") {
                return name.map(ConditionKey::RequestAuthClaims);
            }
            if let Some(name) = bracketed("request.headers") {
                return name.map(ConditionKey::RequestHeader);
            }
            return Err(format!(
                "unknown attribute {key:?}; see https://istio.io/latest/docs/reference/config/security/conditions/"
            ));
        }
    })
}

impl TryFrom<IstioObject<rs::PeerAuthenticationSpec>> for PeerAuthentication {
    type Error = ConfigError;
    fn try_from(raw: IstioObject<rs::PeerAuthenticationSpec>) -> Result<Self, ConfigError> {
        let info = istio_meta(Kind::PeerAuthentication, raw.metadata)?;
        peer_authentication(info.meta, &raw.spec).map_err(|e| e.for_object(&info.object))
    }
}

fn mtls_mode(raw: Option<&rs::MutualTls>, at: &Path) -> FieldResult<Option<MtlsMode>> {
    match raw.and_then(|m| m.mode.as_deref()).unwrap_or("UNSET") {
        "UNSET" => Ok(None),
        "DISABLE" => Ok(Some(MtlsMode::Disable)),
        "PERMISSIVE" => Ok(Some(MtlsMode::Permissive)),
        "STRICT" => Ok(Some(MtlsMode::Strict)),
        other => Err(at.key("mode").err(format!("{other:?} is not one of UNSET, DISABLE, PERMISSIVE, STRICT"))),
    }
}

fn peer_authentication(meta: ObjectMeta, spec: &rs::PeerAuthenticationSpec) -> FieldResult<PeerAuthentication> {
    let at = Path::root("spec");
    let selector = match &spec.selector {
        Some(s) => selector(&s.match_labels, &at.key("selector").key("matchLabels"))?,
        None => None,
    };
    let mtls = mtls_mode(spec.mtls.as_ref(), &at.key("mtls"))?;
    let mut port_level_mtls = BTreeMap::new();
    if let Some(ports) = &spec.port_level_mtls {
        let at = at.key("portLevelMtls");
        if selector.is_none() {
            return Err(at.err(
                "portLevelMtls needs a workload selector (Istio rejects it in mesh- or namespace-wide policies)",
            ));
        }
        if ports.is_empty() {
            return Err(at.err("portLevelMtls, if set, must list at least one port"));
        }
        for (key, m) in ports {
            let at = at.entry(&key.0);
            let n = key.0.parse::<i64>().map_err(|_| at.err(format!("{:?} is not a port number", key.0)))?;
            port_level_mtls.insert(port(n, &at)?, mtls_mode(Some(m), &at)?);
        }
    }
    Ok(PeerAuthentication { meta, selector, mtls, port_level_mtls })
}
