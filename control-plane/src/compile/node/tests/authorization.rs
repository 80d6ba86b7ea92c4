//! AuthorizationPolicy: which policies reach which workloads, and their L4 form.

use ambit_common::api::v1::{self as api, AuthorizationAction, string_match::Kind as Match};

use super::{authorization, compiled, namespace, pod, workload};

/// An AuthorizationPolicy; `scope` is the YAML of `selector:`/`targetRefs:` (or empty) and
/// `rest` the YAML of `action:`/`rules:`, both indented by two spaces.
pub(super) fn policy(namespace: &str, name: &str, scope: &str, rest: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{scope}{rest}---\n"
    )
}

pub(super) const ALLOW_ALL: &str = "  rules: [{}]\n";

pub(super) fn selector(labels: &str) -> String {
    format!("  selector: {{matchLabels: {{{labels}}}}}\n")
}

fn selection_cluster() -> String {
    [
        namespace("shop", ""),
        namespace("bank", ""),
        namespace("istio-system", ""),
        pod("shop", "web", "10.0.0.1", "app: web"),
        pod("shop", "db", "10.0.0.2", "app: db"),
        pod("bank", "web2", "10.0.0.3", "app: web"),
        policy("istio-system", "mesh", "", ALLOW_ALL),
        policy("istio-system", "mesh-web", &selector("app: web"), ALLOW_ALL),
        policy("shop", "ns", "", ALLOW_ALL),
        policy("shop", "only-web", &selector("app: web"), ALLOW_ALL),
        policy("bank", "bank-web", &selector("app: web"), ALLOW_ALL),
        policy("shop", "waypoint", "  targetRefs: [{kind: Service, group: '', name: web}]\n", ALLOW_ALL),
    ]
    .concat()
}

#[test]
fn policies_reach_workloads_by_scope() {
    let out = compiled(&selection_cluster());
    let names = |pod: &str| workload(&out, pod).authorization_policies.clone();
    assert_eq!(names("web"), ["istio-system/mesh", "istio-system/mesh-web", "shop/ns", "shop/only-web"]);
    assert_eq!(names("db"), ["istio-system/mesh", "shop/ns"]);
    assert_eq!(names("web2"), ["bank/bank-web", "istio-system/mesh", "istio-system/mesh-web"]);
}

#[test]
fn targeted_policies_are_for_waypoints_only() {
    let out = compiled(&selection_cluster());
    let names: Vec<&str> = out.authorizations.keys().map(String::as_str).collect();
    assert_eq!(names, ["bank/bank-web", "istio-system/mesh", "istio-system/mesh-web", "shop/ns", "shop/only-web"]);
    assert_eq!(out.authorizations["shop/ns"].name, "shop/ns");
}

fn convert(rest: &str) -> api::Authorization {
    let out = compiled(&policy("shop", "p", "", rest));
    authorization(&out, "shop/p").clone()
}

fn exact(s: &str) -> api::StringMatch {
    api::StringMatch { kind: Some(Match::Exact(s.into())) }
}

fn of(kind: Match) -> api::StringMatch {
    api::StringMatch { kind: Some(kind) }
}

#[test]
fn l4_source_fields_and_star_forms() {
    let a = convert(
        "  rules:
  - from:
    - source:
        principals: ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/shop/*', '*/sa/admin', '*']
        notNamespaces: [kube-system]
        ipBlocks: [10.0.0.0/8, 192.168.1.1]
        notIpBlocks: ['fd00::/64']
    - source:
        namespaces: [shop]
        notPrincipals: ['*']
    to:
    - operation: {ports: ['8080', '9090'], notPorts: ['15021']}
",
    );
    assert_eq!((a.name.as_str(), a.namespace.as_str()), ("p", "shop"));
    assert_eq!((a.action, a.has_l7), (AuthorizationAction::Allow as i32, false));
    let rule = &a.rules[0];
    let s = &rule.from[0];
    assert_eq!(
        s.principals,
        [
            exact("cluster.local/ns/shop/sa/web"),
            of(Match::Prefix("cluster.local/ns/shop/".into())),
            of(Match::Suffix("/sa/admin".into())),
            of(Match::Any(true)),
        ]
    );
    assert_eq!(s.not_namespaces, [exact("kube-system")]);
    let blocks: Vec<_> = s.ip_blocks.iter().map(|b| (super::ip(&b.address), b.prefix_len)).collect();
    assert_eq!(blocks, [("10.0.0.0".parse().unwrap(), 8), ("192.168.1.1".parse().unwrap(), 32)]);
    assert_eq!((s.not_ip_blocks[0].address.len(), s.not_ip_blocks[0].prefix_len), (16, 64));
    assert_eq!(
        (rule.from[1].namespaces.clone(), rule.from[1].not_principals.clone()),
        (vec![exact("shop")], vec![of(Match::Any(true))])
    );
    assert_eq!((rule.to[0].ports.clone(), rule.to[0].not_ports.clone()), (vec![8080, 9090], vec![15021]));
}

#[test]
fn service_accounts_become_principal_suffixes() {
    let a =
        convert("  rules: [{from: [{source: {serviceAccounts: [web, 'bank/teller'], notServiceAccounts: [db]}}]}]\n");
    let s = &a.rules[0].from[0];
    assert_eq!(
        s.principals,
        [of(Match::Suffix("/ns/shop/sa/web".into())), of(Match::Suffix("/ns/bank/sa/teller".into()))]
    );
    assert_eq!(s.not_principals, [of(Match::Suffix("/ns/shop/sa/db".into()))]);
}

#[test]
fn l4_when_conditions() {
    let a = convert(
        "  rules:
  - when:
    - {key: source.ip, values: [10.1.0.0/16], notValues: [10.1.2.3]}
    - {key: source.namespace, values: ['team-*']}
    - {key: source.principal, notValues: ['*']}
    - {key: destination.ip, values: ['fd00::1']}
    - {key: destination.port, values: ['443']}
",
    );
    assert!(!a.has_l7);
    let when: Vec<_> =
        a.rules[0].when.iter().map(|c| (c.key.as_str(), c.values.clone(), c.not_values.clone())).collect();
    assert_eq!(
        when,
        [
            ("source.ip", vec![exact("10.1.0.0/16")], vec![exact("10.1.2.3/32")]),
            ("source.namespace", vec![of(Match::Prefix("team-".into()))], vec![]),
            ("source.principal", vec![], vec![of(Match::Any(true))]),
            ("destination.ip", vec![exact("fd00::1/128")], vec![]),
            ("destination.port", vec![exact("443")], vec![]),
        ]
    );
}

#[test]
fn allow_drops_only_the_rules_with_l7_attributes() {
    let a = convert(
        "  action: ALLOW
  rules:
  - from: [{source: {namespaces: [shop]}}]
    to: [{operation: {methods: [GET]}}]
  - from: [{source: {namespaces: [bank]}}]
  - when: [{key: 'request.headers[x-user]', values: [jason]}]
  - from: [{source: {remoteIpBlocks: [1.2.3.4]}}]
",
    );
    assert!(a.has_l7);
    assert_eq!(a.rules.len(), 1, "{:?}", a.rules);
    assert_eq!(a.rules[0].from[0].namespaces, [exact("bank")]);
}

#[test]
fn allow_with_only_l7_rules_matches_nothing() {
    let a = convert(
        "  rules: [{to: [{operation: {paths: ['/admin']}}]}, {from: [{source: {requestPrincipals: ['*']}}]}]\n",
    );
    assert!(a.has_l7);
    assert!(a.rules.is_empty());
}

#[test]
fn deny_keeps_the_l4_part_of_rules_with_l7_attributes() {
    let a = convert(
        "  action: DENY
  rules:
  - from: [{source: {namespaces: [bank], remoteIpBlocks: [1.2.3.4]}}]
    to: [{operation: {ports: ['80'], methods: [POST]}}, {operation: {hosts: [evil.com]}}]
    when:
    - {key: 'request.auth.claims[iss]', values: [x]}
    - {key: remote.ip, values: [1.2.3.4]}
    - {key: destination.port, values: ['80']}
",
    );
    assert_eq!((a.action, a.has_l7), (AuthorizationAction::Deny as i32, true));
    let rule = &a.rules[0];
    assert_eq!(rule.from[0].namespaces, [exact("bank")]);
    assert!(rule.from[0].ip_blocks.is_empty(), "remoteIpBlocks are not source addresses at L4");
    assert_eq!(rule.to, [api::Operation { ports: vec![80], not_ports: vec![] }, api::Operation::default()]);
    let keys: Vec<&str> = rule.when.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["destination.port"]);
}

#[test]
fn empty_rules_and_audit() {
    let nothing = convert("  action: ALLOW\n");
    assert!(nothing.rules.is_empty() && !nothing.has_l7);
    let everything = convert(ALLOW_ALL);
    assert_eq!(everything.rules, [api::AuthorizationRule::default()]);
    let audit = convert("  action: AUDIT\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]\n");
    assert_eq!((audit.action, audit.has_l7, audit.rules.len()), (AuthorizationAction::Audit as i32, true, 1));
}
