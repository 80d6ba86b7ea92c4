//! Builders for the policy tests: `Authorization` protos written as compactly as the YAML they
//! stand for, in the form the control plane compiles them to
//! (`control-plane/src/compile/node/authorization.rs`), and connections to a local workload.

mod matrix_fields;
mod matrix_policies;
mod mtls;
mod view;
mod waypoint;

use std::net::{IpAddr, SocketAddr};

use ambit_common::api::v1::{
    Authorization, AuthorizationAction, AuthorizationRule, Condition, IpNet, Operation, Source, StringMatch,
    string_match::Kind,
};

use super::{ConnectionAttrs, Decision, DenyReason, authorize};

/// Namespace of every policy built here: `allow("p", …)` is `foo/p`.
const NS: &str = "foo";
const SLEEP: &str = "cluster.local/ns/foo/sa/sleep";
const ADMIN: &str = "cluster.local/ns/bar/sa/admin";

fn policy(action: AuthorizationAction, name: &str, rules: Vec<AuthorizationRule>) -> Authorization {
    Authorization { name: name.into(), namespace: NS.into(), action: action as i32, rules, has_l7: false }
}

fn allow(name: &str, rules: Vec<AuthorizationRule>) -> Authorization {
    policy(AuthorizationAction::Allow, name, rules)
}

fn deny(name: &str, rules: Vec<AuthorizationRule>) -> Authorization {
    policy(AuthorizationAction::Deny, name, rules)
}

fn audit(name: &str, rules: Vec<AuthorizationRule>) -> Authorization {
    policy(AuthorizationAction::Audit, name, rules)
}

/// Istio's `*` forms, as istiod's `stringToMatch` (and Ambit's compiler) read them.
fn m(value: &str) -> StringMatch {
    let kind = if value == "*" {
        Kind::Any(true)
    } else if let Some(suffix) = value.strip_prefix('*') {
        Kind::Suffix(suffix.into())
    } else if let Some(prefix) = value.strip_suffix('*') {
        Kind::Prefix(prefix.into())
    } else {
        Kind::Exact(value.into())
    };
    StringMatch { kind: Some(kind) }
}

fn ms(values: &[&str]) -> Vec<StringMatch> {
    values.iter().map(|v| m(v)).collect()
}

/// `10.0.0.0/8` or a single address (`/32`, `/128`).
fn nets(blocks: &[&str]) -> Vec<IpNet> {
    let net = |block: &&str| {
        let (addr, len) = block.split_once('/').map_or((*block, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = addr.parse().expect("test address");
        let (address, full) = match addr {
            IpAddr::V4(v4) => (v4.octets().to_vec(), 32),
            IpAddr::V6(v6) => (v6.octets().to_vec(), 128),
        };
        IpNet { address, prefix_len: len.map_or(full, |l| l.parse().expect("test prefix")) }
    };
    blocks.iter().map(net).collect()
}

fn rule(from: Vec<Source>, to: Vec<Operation>, when: Vec<Condition>) -> AuthorizationRule {
    AuthorizationRule { from, to, when }
}

fn from(sources: Vec<Source>) -> AuthorizationRule {
    rule(sources, vec![], vec![])
}

fn to(operations: Vec<Operation>) -> AuthorizationRule {
    rule(vec![], operations, vec![])
}

fn when(conditions: Vec<Condition>) -> AuthorizationRule {
    rule(vec![], vec![], conditions)
}

/// `rules: [{}]`.
fn any_rule() -> Vec<AuthorizationRule> {
    vec![AuthorizationRule::default()]
}

fn principals(values: &[&str]) -> Source {
    Source { principals: ms(values), ..Source::default() }
}

fn not_principals(values: &[&str]) -> Source {
    Source { not_principals: ms(values), ..Source::default() }
}

fn namespaces(values: &[&str]) -> Source {
    Source { namespaces: ms(values), ..Source::default() }
}

fn not_namespaces(values: &[&str]) -> Source {
    Source { not_namespaces: ms(values), ..Source::default() }
}

fn ip_blocks(blocks: &[&str]) -> Source {
    Source { ip_blocks: nets(blocks), ..Source::default() }
}

fn not_ip_blocks(blocks: &[&str]) -> Source {
    Source { not_ip_blocks: nets(blocks), ..Source::default() }
}

fn ports(ports: &[u32]) -> Operation {
    Operation { ports: ports.to_vec(), not_ports: vec![] }
}

fn not_ports(ports: &[u32]) -> Operation {
    Operation { ports: vec![], not_ports: ports.to_vec() }
}

/// A `when` condition; IP values as the compiler sends them (CIDR strings, `exact`).
fn cond(key: &str, values: &[&str], not_values: &[&str]) -> Condition {
    Condition { key: key.into(), values: ms(values), not_values: ms(not_values) }
}

/// The workload's address and port every test connection goes to, unless changed.
fn destination() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 5], 8080))
}

/// An HBONE connection from `principal` at 10.1.2.3.
fn mtls(principal: &str) -> ConnectionAttrs {
    ConnectionAttrs::new(IpAddr::from([10, 1, 2, 3]), Some(principal), destination())
}

/// A plaintext connection from 10.1.2.3.
fn plain() -> ConnectionAttrs {
    ConnectionAttrs::new(IpAddr::from([10, 1, 2, 3]), None, destination())
}

/// Changes to a test connection.
trait Conn {
    fn src(self, ip: &str) -> Self;
    fn dst(self, ip: &str) -> Self;
    fn port(self, port: u16) -> Self;
}

impl Conn for ConnectionAttrs {
    fn src(self, ip: &str) -> Self {
        Self { source_ip: ip.parse().expect("test address"), ..self }
    }
    fn dst(self, ip: &str) -> Self {
        Self { destination_ip: ip.parse().expect("test address"), ..self }
    }
    fn port(self, port: u16) -> Self {
        Self { destination_port: port, ..self }
    }
}

fn allowed() -> Decision {
    Decision::Allow { audited: false, by: None }
}

fn allowed_by(policy: &str) -> Decision {
    Decision::Allow { audited: false, by: Some(policy.into()) }
}

/// Admitted by the only ALLOW policy, `foo/p`.
fn admit() -> Decision {
    allowed_by("foo/p")
}

/// Refused: the only ALLOW policy, `foo/p`, does not match.
fn refuse() -> Decision {
    not_allowed(&["foo/p"])
}

fn denied_by(policy: &str) -> Decision {
    Decision::Deny { by: DenyReason::DenyPolicy { policy: policy.into() } }
}

fn not_allowed(policies: &[&str]) -> Decision {
    Decision::Deny { by: DenyReason::NoAllowMatched { policies: policies.iter().map(|p| (*p).into()).collect() } }
}

/// One row of the authorization matrix.
struct Case {
    name: &'static str,
    policies: Vec<Authorization>,
    conn: ConnectionAttrs,
    want: Decision,
}

fn case(name: &'static str, policies: Vec<Authorization>, conn: ConnectionAttrs, want: Decision) -> Case {
    Case { name, policies, conn, want }
}

/// Runs every row and reports all that fail, not just the first.
fn check(cases: Vec<Case>) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let policies: Vec<&Authorization> = c.policies.iter().collect();
            let got = authorize(&policies, &c.conn);
            (got != c.want).then(|| format!("{}: got {got:?}, want {:?}", c.name, c.want))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
