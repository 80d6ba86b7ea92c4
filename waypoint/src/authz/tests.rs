//! The decision on hand-built policies, case by case against Istio's documented semantics.

use std::net::{IpAddr, SocketAddr};

use ambit_common::{
    api::v1::{
        AuthorizationAction, HttpAuthorization, HttpAuthorizationCondition, HttpAuthorizationOperation,
        HttpAuthorizationRule, HttpAuthorizationSource, HttpConditionKey, IpNet, StringMatch, string_match::Kind,
    },
    identity::SpiffeId,
};

use super::{Authorizer, AuthzError, AuthzRequest, Decision, Denial};
use crate::{
    outcome::Failure,
    route::{RequestView, Source},
};

const CART: &str = "cart.shop.svc.cluster.local";

fn exact(s: &str) -> StringMatch {
    StringMatch { kind: Some(Kind::Exact(s.into())) }
}
fn prefix(s: &str) -> StringMatch {
    StringMatch { kind: Some(Kind::Prefix(s.into())) }
}
fn suffix(s: &str) -> StringMatch {
    StringMatch { kind: Some(Kind::Suffix(s.into())) }
}
fn any() -> StringMatch {
    StringMatch { kind: Some(Kind::Any(true)) }
}
fn net(a: [u8; 4], len: u32) -> IpNet {
    IpNet { address: a.to_vec(), prefix_len: len }
}

fn policy(name: &str, action: AuthorizationAction, rules: Vec<HttpAuthorizationRule>) -> HttpAuthorization {
    HttpAuthorization {
        name: name.into(),
        namespace: "shop".into(),
        action: action.into(),
        rules,
        ..Default::default()
    }
}
fn allow(rules: Vec<HttpAuthorizationRule>) -> HttpAuthorization {
    policy("allow", AuthorizationAction::Allow, rules)
}
fn deny(rules: Vec<HttpAuthorizationRule>) -> HttpAuthorization {
    policy("deny", AuthorizationAction::Deny, rules)
}
fn to(op: HttpAuthorizationOperation) -> HttpAuthorizationRule {
    HttpAuthorizationRule { to: vec![op], ..Default::default() }
}
fn from(source: HttpAuthorizationSource) -> HttpAuthorizationRule {
    HttpAuthorizationRule { from: vec![source], ..Default::default() }
}
fn when(key: HttpConditionKey, name: &str, values: Vec<StringMatch>, not: Vec<StringMatch>) -> HttpAuthorizationRule {
    let c = HttpAuthorizationCondition { key: key.into(), name: name.into(), values, not_values: not };
    HttpAuthorizationRule { when: vec![c], ..Default::default() }
}

/// A request to be decided: `GET http://cart.shop:8080/api/items?x=1` from `shop/web` at 10.1.0.5.
struct Req {
    method: &'static str,
    uri: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    source: Source,
    /// `None`: addressed to a workload bound to the waypoint.
    service: Option<&'static str>,
    port: u16,
    remote: Option<IpAddr>,
}

impl Default for Req {
    fn default() -> Self {
        Self {
            method: "GET",
            uri: "http://cart.shop:8080/api/items?x=1",
            headers: Vec::new(),
            source: Source {
                address: IpAddr::from([10, 1, 0, 5]),
                identity: Some(SpiffeId::new("cluster.local", "shop", "web").unwrap()),
            },
            service: Some(CART),
            port: 8080,
            remote: None,
        }
    }
}

fn decide(policies: &[HttpAuthorization], req: Req) -> Decision {
    let mut builder = http::Request::builder().method(req.method).uri(req.uri);
    for (name, value) in &req.headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let view = RequestView::new(&parts, &req.source);
    let request = AuthzRequest {
        view: &view,
        service: req.service,
        destination: SocketAddr::from(([10, 96, 0, 10], req.port)),
        remote: req.remote.unwrap_or(req.source.address),
    };
    Authorizer::new(policies).unwrap().decide(&request)
}

fn allowed(policies: &[HttpAuthorization], req: Req) -> bool {
    decide(policies, req).is_allowed()
}

fn plaintext() -> Source {
    Source { address: IpAddr::from([192, 0, 2, 7]), identity: None }
}

#[test]
fn no_policy_allows_and_a_denial_is_rbac_access_denied() {
    assert_eq!(decide(&[], Req::default()), Decision::Allow { by: None, audited_by: None });
    let d = decide(&[deny(vec![HttpAuthorizationRule::default()])], Req::default());
    assert_eq!(d, Decision::Deny(Denial::DenyPolicy { policy: "shop/deny".into() }));
    assert_eq!(d.failure(), Some(Failure::AccessDenied));
    assert_eq!(Failure::AccessDenied.status(), http::StatusCode::FORBIDDEN);
}

#[test]
fn an_allow_policy_without_rules_matches_nothing_and_an_empty_rule_everything() {
    assert!(!allowed(&[allow(vec![])], Req::default()), "ALLOW with no rules denies");
    assert!(allowed(&[allow(vec![HttpAuthorizationRule::default()])], Req::default()));
    assert!(allowed(&[deny(vec![])], Req::default()), "DENY with no rules matches nothing");
}

#[test]
fn methods_are_exact_and_case_sensitive() {
    let p = [allow(vec![to(HttpAuthorizationOperation { methods: vec![exact("GET")], ..Default::default() })])];
    assert!(allowed(&p, Req::default()));
    assert!(!allowed(&p, Req { method: "POST", ..Req::default() }));
    assert!(!allowed(&p, Req { method: "get", ..Req::default() }));
}

#[test]
fn paths_ignore_the_query_and_use_istio_forms() {
    let ok = |paths: Vec<StringMatch>, uri| {
        let p = [allow(vec![to(HttpAuthorizationOperation { paths, ..Default::default() })])];
        allowed(&p, Req { uri, ..Req::default() })
    };
    assert!(ok(vec![exact("/api/items")], "http://cart.shop:8080/api/items?x=1"), "query not part of the path");
    assert!(!ok(vec![exact("/api/items?x=1")], "http://cart.shop:8080/api/items?x=1"));
    assert!(ok(vec![prefix("/api/")], "/api/items"));
    assert!(!ok(vec![prefix("/api/")], "/apix"));
    assert!(ok(vec![suffix(".png")], "/img/a.png?size=2"));
    assert!(!ok(vec![suffix(".png")], "/img/a.jpg"));
    assert!(ok(vec![any()], "/"));
}

#[test]
fn not_paths_exclude_and_combine_with_paths() {
    let op = HttpAuthorizationOperation {
        paths: vec![prefix("/api/")],
        not_paths: vec![prefix("/api/admin")],
        ..Default::default()
    };
    let p = [allow(vec![to(op)])];
    assert!(allowed(&p, Req { uri: "/api/items", ..Req::default() }));
    assert!(!allowed(&p, Req { uri: "/api/admin/users", ..Req::default() }), "both must hold");
    assert!(!allowed(&p, Req { uri: "/other", ..Req::default() }));
}

#[test]
fn hosts_ignore_case_and_keep_the_port() {
    let ok = |hosts: Vec<StringMatch>, uri| {
        let p = [allow(vec![to(HttpAuthorizationOperation { hosts, ..Default::default() })])];
        allowed(&p, Req { uri, ..Req::default() })
    };
    assert!(ok(vec![exact("cart.shop")], "http://CART.Shop/"), "case-insensitive (GHSA-7774-7vr3-cc8j)");
    assert!(!ok(vec![exact("cart.shop")], "http://cart.shop:8080/"), "the port is part of the authority");
    assert!(ok(vec![prefix("cart.shop:")], "http://cart.shop:8080/"));
    assert!(ok(vec![suffix(".SHOP")], "http://cart.shop/"));
    let not =
        [allow(vec![to(HttpAuthorizationOperation { not_hosts: vec![exact("Evil.com")], ..Default::default() })])];
    assert!(!allowed(&not, Req { uri: "http://evil.COM/", ..Req::default() }));
}

#[test]
fn ports_and_not_ports_are_the_destination_port() {
    let p = [allow(vec![to(HttpAuthorizationOperation { ports: vec![8080], ..Default::default() })])];
    assert!(allowed(&p, Req::default()));
    assert!(!allowed(&p, Req { port: 9090, ..Req::default() }));
    let d = [deny(vec![to(HttpAuthorizationOperation { not_ports: vec![8080], ..Default::default() })])];
    assert!(allowed(&d, Req::default()));
    assert!(!allowed(&d, Req { port: 9090, ..Req::default() }));
}

#[test]
fn principals_use_istio_form_without_spiffe_scheme() {
    let p = |principals| [allow(vec![from(HttpAuthorizationSource { principals, ..Default::default() })])];
    assert!(allowed(&p(vec![exact("cluster.local/ns/shop/sa/web")]), Req::default()));
    assert!(!allowed(&p(vec![exact("spiffe://cluster.local/ns/shop/sa/web")]), Req::default()));
    assert!(allowed(&p(vec![suffix("/ns/shop/sa/web")]), Req::default()), "serviceAccounts form");
    assert!(!allowed(&p(vec![any()]), Req { source: plaintext(), ..Req::default() }), "`*` needs an identity");
}

#[test]
fn not_principals_star_denies_plaintext_in_a_deny_policy() {
    let d = [deny(vec![from(HttpAuthorizationSource { not_principals: vec![any()], ..Default::default() })])];
    assert!(allowed(&d, Req::default()));
    assert!(!allowed(&d, Req { source: plaintext(), ..Req::default() }));
}

#[test]
fn namespaces_and_not_namespaces() {
    let p = [allow(vec![from(HttpAuthorizationSource {
        namespaces: vec![prefix("sh")],
        not_namespaces: vec![exact("shop")],
        ..Default::default()
    })])];
    assert!(!allowed(&p, Req::default()), "the `not` form must hold too");
    let ns = [allow(vec![from(HttpAuthorizationSource { not_namespaces: vec![exact("shop")], ..Default::default() })])];
    assert!(allowed(&ns, Req { source: plaintext(), ..Req::default() }), "absent namespace satisfies `not`");
}

#[test]
fn ip_blocks_are_the_peer_and_remote_ip_blocks_the_original_client() {
    let p =
        [allow(vec![from(HttpAuthorizationSource { ip_blocks: vec![net([10, 1, 0, 0], 16)], ..Default::default() })])];
    assert!(allowed(&p, Req::default()));
    assert!(!allowed(&p, Req { source: plaintext(), ..Req::default() }));
    let r = [deny(vec![from(HttpAuthorizationSource {
        remote_ip_blocks: vec![net([203, 0, 113, 9], 32)],
        ..Default::default()
    })])];
    assert!(allowed(&r, Req::default()));
    assert!(!allowed(&r, Req { remote: Some(IpAddr::from([203, 0, 113, 9])), ..Req::default() }));
    let n = [allow(vec![from(HttpAuthorizationSource {
        not_ip_blocks: vec![net([10, 0, 0, 0], 8)],
        ..Default::default()
    })])];
    assert!(!allowed(&n, Req::default()));
}

#[test]
fn header_conditions_with_values_presence_and_not_values() {
    let key = HttpConditionKey::RequestHeader;
    let p = [allow(vec![when(key, "x-team", vec![prefix("blue")], vec![exact("blue-test")])])];
    assert!(allowed(&p, Req { headers: vec![("X-Team", "blue-prod")], ..Req::default() }));
    assert!(!allowed(&p, Req { headers: vec![("x-team", "blue-test")], ..Req::default() }));
    assert!(!allowed(&p, Req::default()), "an absent header matches no value");
    let present = [allow(vec![when(key, "x-token", vec![any()], vec![])])];
    assert!(allowed(&present, Req { headers: vec![("x-token", "t")], ..Req::default() }));
    assert!(!allowed(&present, Req { headers: vec![("x-token", "")], ..Req::default() }), "`*` needs a value");
    let d = [deny(vec![when(key, "user-agent", vec![], vec![prefix("Mozilla/")])])];
    assert!(!allowed(&d, Req::default()), "no User-Agent: the `not` holds, DENY matches");
}

#[test]
fn ip_port_and_identity_conditions() {
    let c = |key, values: Vec<StringMatch>| [allow(vec![when(key, "", values, vec![])])];
    assert!(allowed(&c(HttpConditionKey::SourceIp, vec![exact("10.1.0.0/16")]), Req::default()));
    assert!(!allowed(&c(HttpConditionKey::SourceIp, vec![exact("10.2.0.0/16")]), Req::default()));
    assert!(allowed(&c(HttpConditionKey::DestinationIp, vec![exact("10.96.0.10")]), Req::default()));
    assert!(allowed(&c(HttpConditionKey::DestinationPort, vec![exact("8080")]), Req::default()));
    assert!(!allowed(&c(HttpConditionKey::DestinationPort, vec![exact("80")]), Req::default()));
    assert!(allowed(&c(HttpConditionKey::SourceNamespace, vec![exact("shop")]), Req::default()));
    assert!(allowed(&c(HttpConditionKey::SourcePrincipal, vec![suffix("/sa/web")]), Req::default()));
    assert!(!allowed(&c(HttpConditionKey::RemoteIp, vec![exact("203.0.113.0/24")]), Req::default()));
}

#[test]
fn without_jwt_request_principals_fail_closed_as_in_istio() {
    let need = [allow(vec![from(HttpAuthorizationSource { request_principals: vec![any()], ..Default::default() })])];
    assert!(!allowed(&need, Req::default()), "ALLOW requiring a request principal matches nothing");
    let require_jwt =
        [deny(vec![from(HttpAuthorizationSource { not_request_principals: vec![any()], ..Default::default() })])];
    assert!(!allowed(&require_jwt, Req::default()), "Istio's require-JWT DENY denies every request");
    let claim = [allow(vec![when(HttpConditionKey::RequestAuth, "request.auth.claims[iss]", vec![any()], vec![])])];
    assert!(!allowed(&claim, Req::default()));
    let not_claim =
        [deny(vec![when(HttpConditionKey::RequestAuth, "request.auth.principal", vec![], vec![exact("a/b")])])];
    assert!(!allowed(&not_claim, Req::default()));
}

#[test]
fn deny_wins_over_allow_and_any_matching_allow_admits() {
    let a = allow(vec![HttpAuthorizationRule::default()]);
    let d = deny(vec![to(HttpAuthorizationOperation { methods: vec![exact("DELETE")], ..Default::default() })]);
    assert!(!allowed(&[a.clone(), d.clone()], Req { method: "DELETE", ..Req::default() }));
    assert_eq!(decide(&[d, a], Req::default()), Decision::Allow { by: Some("shop/allow".into()), audited_by: None });
    let only_post = policy(
        "post",
        AuthorizationAction::Allow,
        vec![to(HttpAuthorizationOperation { methods: vec![exact("POST")], ..Default::default() })],
    );
    let only_get = policy(
        "get",
        AuthorizationAction::Allow,
        vec![to(HttpAuthorizationOperation { methods: vec![exact("GET")], ..Default::default() })],
    );
    assert_eq!(
        decide(&[only_post.clone(), only_get], Req::default()),
        Decision::Allow { by: Some("shop/get".into()), audited_by: None }
    );
    assert_eq!(
        decide(&[only_post], Req::default()),
        Decision::Deny(Denial::NoAllowMatched { policies: vec!["shop/post".into()] })
    );
}

#[test]
fn audit_never_changes_the_decision() {
    let audit = policy("audit", AuthorizationAction::Audit, vec![HttpAuthorizationRule::default()]);
    assert_eq!(
        decide(std::slice::from_ref(&audit), Req::default()),
        Decision::Allow { by: None, audited_by: Some("shop/audit".into()) }
    );
    let d = decide(&[audit, allow(vec![])], Req::default());
    assert_eq!(d, Decision::Deny(Denial::NoAllowMatched { policies: vec!["shop/allow".into()] }));
}

#[test]
fn rule_parts_are_anded_and_alternatives_ored() {
    let rule = HttpAuthorizationRule {
        from: vec![
            HttpAuthorizationSource { namespaces: vec![exact("other")], ..Default::default() },
            HttpAuthorizationSource { namespaces: vec![exact("shop")], ..Default::default() },
        ],
        to: vec![HttpAuthorizationOperation { methods: vec![exact("GET")], ..Default::default() }],
        when: vec![HttpAuthorizationCondition {
            key: HttpConditionKey::DestinationPort.into(),
            values: vec![exact("8080")],
            ..Default::default()
        }],
    };
    let p = [allow(vec![rule])];
    assert!(allowed(&p, Req::default()), "the second source matches");
    assert!(!allowed(&p, Req { method: "PUT", ..Req::default() }));
    assert!(!allowed(&p, Req { port: 9090, ..Req::default() }));
    // Fields of one operation are ANDed.
    let op = HttpAuthorizationOperation { methods: vec![exact("GET")], paths: vec![exact("/x")], ..Default::default() };
    assert!(!allowed(&[allow(vec![to(op)])], Req::default()));
}

#[test]
fn hostnames_limit_a_policy_to_its_services() {
    let mut d = deny(vec![HttpAuthorizationRule::default()]);
    d.hostnames = vec![CART.into()];
    assert!(!allowed(std::slice::from_ref(&d), Req::default()));
    assert!(allowed(&[d], Req { service: Some("pay.shop.svc.cluster.local"), ..Req::default() }));
    let mut a = allow(vec![]);
    a.hostnames = vec![CART.into()];
    assert!(
        allowed(&[a], Req { service: Some("pay.shop.svc.cluster.local"), ..Req::default() }),
        "an ALLOW for another service does not apply, so it does not deny"
    );
}

#[test]
fn workload_addressed_requests_see_only_the_waypoints_own_policies() {
    let workload = || Req { service: None, ..Req::default() };
    let mut for_cart = deny(vec![HttpAuthorizationRule::default()]);
    for_cart.hostnames = vec![CART.into()];
    assert!(allowed(std::slice::from_ref(&for_cart), workload()), "a policy limited to a service does not apply");
    let waypoint_wide = deny(vec![HttpAuthorizationRule::default()]);
    assert!(!allowed(&[for_cart, waypoint_wide], workload()), "a policy attached to the waypoint does");
    let mut allow_cart = allow(vec![]);
    allow_cart.hostnames = vec![CART.into()];
    assert!(allowed(&[allow_cart], workload()), "an ALLOW for a service neither admits nor denies");
}

#[test]
fn bad_policies_are_refused_naming_policy_and_field() {
    let err = |p: HttpAuthorization| Authorizer::new(&[p]).err().unwrap();
    let unknown = policy("x", AuthorizationAction::Unspecified, vec![]);
    assert_eq!(err(unknown), AuthzError::UnknownAction { policy: "shop/x".into(), action: 0 });
    let bad_ip = allow(vec![when(HttpConditionKey::SourceIp, "", vec![exact("10.0.0.300")], vec![])]);
    assert_eq!(
        err(bad_ip).to_string(),
        "authorization policy shop/allow: rules[0].when[0].values[0]: \"10.0.0.300\" is not an IP address or CIDR"
    );
    let bad_net =
        allow(vec![from(HttpAuthorizationSource { ip_blocks: vec![net([10, 0, 0, 0], 33)], ..Default::default() })]);
    assert!(err(bad_net).to_string().contains("rules[0].from[0].ip_blocks[0]"));
    let no_name = allow(vec![when(HttpConditionKey::RequestHeader, "", vec![any()], vec![])]);
    assert!(err(no_name).to_string().contains("rules[0].when[0].name"));
}

#[test]
fn not_enforced_notes_are_kept_for_logging() {
    let mut p = deny(vec![HttpAuthorizationRule::default()]);
    p.not_enforced = vec!["rules[0].when[0]: connection.sni …".into()];
    let authorizer = Authorizer::new(&[p]).unwrap();
    let notes: Vec<_> = authorizer.not_enforced().collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].0, "shop/deny");
}
