//! Authorization matrix, part 1: each source, operation and `when` field, its `not` form, and
//! plaintext connections. Quotes are from
//! <https://istio.io/latest/docs/reference/config/security/authorization-policy/> unless a
//! row names another source.

use super::*;

#[test]
fn field_principals() {
    let only = |values: &[&str]| vec![allow("p", vec![from(vec![principals(values)])])];
    check(vec![
        // "Exact match: "abc" will match on value "abc"."
        case("principal exact, same", only(&[SLEEP]), mtls(SLEEP), admit()),
        // "principals: A list of peer identities … If not set, any principal is allowed" (set: others are not).
        case("principal exact, other", only(&[SLEEP]), mtls(ADMIN), refuse()),
        // "Prefix match: "abc*" will match on value "abc" and "abcd"."
        case("principal prefix", only(&["cluster.local/ns/foo/*"]), mtls(SLEEP), admit()),
        case("principal prefix, other ns", only(&["cluster.local/ns/foo/*"]), mtls(ADMIN), refuse()),
        // "Suffix match: "*abc" will match on value "abc" and "xabc"." (any trust domain)
        case("principal suffix", only(&["*/sa/sleep"]), mtls("other.td/ns/x/sa/sleep"), admit()),
        // "Presence match: "*" will match when value is not empty."
        case("principal *, mTLS", only(&["*"]), mtls(ADMIN), admit()),
        // principals: "This field requires mTLS enabled": plaintext has no principal, `*` included.
        case("principal *, plaintext", only(&["*"]), plain(), refuse()),
        case("principal exact, plaintext", only(&[SLEEP]), plain(), refuse()),
        // A peer presenting `spiffe://…` is matched on Istio's form without the scheme.
        case("principal with scheme", only(&[SLEEP]), mtls(&format!("spiffe://{SLEEP}")), admit()),
    ]);
}

#[test]
fn field_not_principals() {
    let only = |values: &[&str]| vec![allow("p", vec![from(vec![not_principals(values)])])];
    let require_mtls = vec![deny("require-mtls", vec![from(vec![not_principals(&["*"])])])];
    check(vec![
        // notPrincipals: "A list of negative match of peer identities."
        case("notPrincipals, listed", only(&[SLEEP]), mtls(SLEEP), refuse()),
        case("notPrincipals, other", only(&[SLEEP]), mtls(ADMIN), admit()),
        // ISTIO-SECURITY-2021-004: mTLS-only fields "will never match when the traffic is plain
        // text … and the request might be allowed unexpectedly": the negation holds.
        case("notPrincipals, plaintext", only(&[SLEEP]), plain(), admit()),
        // The same advisory: reject plain text "explicitly" — DENY notPrincipals ["*"], the
        // policy istiod itself generates for STRICT PeerAuthentication in ambient.
        case("DENY notPrincipals *, plaintext", require_mtls.clone(), plain(), denied_by("foo/require-mtls")),
        case("DENY notPrincipals *, mTLS", require_mtls, mtls(SLEEP), allowed()),
    ]);
}

#[test]
fn field_namespaces() {
    let only = |source: Source| vec![allow("p", vec![from(vec![source])])];
    check(vec![
        // namespaces: "A list of namespaces derived from the peer certificate."
        case("namespace, same", only(namespaces(&["foo"])), mtls(SLEEP), admit()),
        case("namespace, other", only(namespaces(&["foo"])), mtls(ADMIN), refuse()),
        // "Prefix match: "abc*" will match on value "abc" and "abcd"."
        case("namespace prefix", only(namespaces(&["te*"])), mtls("cluster.local/ns/test/sa/x"), admit()),
        // namespaces: "This field requires mTLS enabled".
        case("namespace, plaintext", only(namespaces(&["foo"])), plain(), refuse()),
        // notNamespaces: "A list of negative match of namespaces."
        case("notNamespaces, listed", only(not_namespaces(&["bar"])), mtls(ADMIN), refuse()),
        case("notNamespaces, other", only(not_namespaces(&["bar"])), mtls(SLEEP), admit()),
        // ISTIO-SECURITY-2021-004, its own example: with notNamespaces ["foo"], "A plain text
        // request from the namespace foo will actually be allowed."
        case("notNamespaces, plaintext", only(not_namespaces(&["foo"])), plain(), admit()),
    ]);
}

#[test]
fn field_ip_blocks() {
    let only = |source: Source| vec![allow("p", vec![from(vec![source])])];
    check(vec![
        // ipBlocks: "Single IP (e.g. "203.0.113.4") and CIDR (e.g. "203.0.113.0/24") are supported."
        case("ipBlocks CIDR, inside", only(ip_blocks(&["10.0.0.0/8"])), plain().src("10.200.0.1"), admit()),
        case("ipBlocks CIDR, outside", only(ip_blocks(&["10.0.0.0/8"])), plain().src("192.168.0.1"), refuse()),
        case("ipBlocks single IP", only(ip_blocks(&["192.168.1.1"])), mtls(SLEEP).src("192.168.1.1"), admit()),
        case("ipBlocks single IP, next", only(ip_blocks(&["192.168.1.1"])), mtls(SLEEP).src("192.168.1.2"), refuse()),
        // ipBlocks are "populated from the source address of the IP packet": an IPv4-mapped
        // IPv6 source is that IPv4 address (ztunnel canonicalizes the same way).
        case("ipBlocks, mapped source", only(ip_blocks(&["10.0.0.0/8"])), plain().src("::ffff:10.1.2.3"), admit()),
        case("ipBlocks IPv6", only(ip_blocks(&["fd00::/64"])), plain().src("fd00::7"), admit()),
        // notIpBlocks: "A list of negative match of IP blocks."
        case("notIpBlocks, listed", only(not_ip_blocks(&["203.0.113.4"])), plain().src("203.0.113.4"), refuse()),
        case("notIpBlocks, other", only(not_ip_blocks(&["203.0.113.4"])), plain().src("203.0.113.5"), admit()),
    ]);
}

#[test]
fn source_fields_are_anded() {
    // "the following source matches if the principal is "admin" or "dev" and the namespace is
    // "prod" or "test" and the ip is not "203.0.113.4"."
    let source = Source {
        principals: ms(&["cluster.local/ns/prod/sa/admin", "cluster.local/ns/test/sa/dev"]),
        namespaces: ms(&["prod", "test"]),
        not_ip_blocks: nets(&["203.0.113.4"]),
        ..Source::default()
    };
    let only = || vec![allow("p", vec![from(vec![source.clone()])])];
    let dev = "cluster.local/ns/test/sa/dev";
    check(vec![
        case("source AND, all hold", only(), mtls(dev), admit()),
        case("source AND, excluded IP", only(), mtls(dev).src("203.0.113.4"), refuse()),
        case("source AND, other principal", only(), mtls(SLEEP), refuse()),
    ]);
}

#[test]
fn field_ports() {
    let only = |operations: Vec<Operation>| vec![allow("p", vec![to(operations)])];
    check(vec![
        // ports: "A list of ports as specified in the connection."
        case("ports, listed", only(vec![ports(&[8080])]), plain(), admit()),
        case("ports, other", only(vec![ports(&[8080])]), plain().port(9090), refuse()),
        // notPorts: "A list of negative match of ports as specified in the connection."
        case("notPorts, listed", only(vec![not_ports(&[15021])]), plain().port(15021), refuse()),
        case("notPorts, other", only(vec![not_ports(&[15021])]), plain().port(80), admit()),
        // "A match occurs when at least one … operation …" matches: operations are ORed.
        case("operations ORed", only(vec![ports(&[80]), ports(&[443])]), plain().port(443), admit()),
    ]);
}

#[test]
fn when_conditions() {
    let only = |conditions: Vec<Condition>| vec![allow("p", vec![when(conditions)])];
    let src_ip = || only(vec![cond("source.ip", &["10.1.0.0/16"], &["10.1.2.3/32"])]);
    let no_principal = || only(vec![cond("source.principal", &[], &["*"])]);
    let dst_ip = || only(vec![cond("destination.ip", &["10.0.0.5/32"], &[])]);
    check(vec![
        // Condition values: "A list of allowed values"; notValues: "A list of negative match of values".
        case("source.ip value", src_ip(), plain().src("10.1.9.9"), admit()),
        case("source.ip notValue", src_ip(), plain().src("10.1.2.3"), refuse()),
        // source.namespace/source.principal are the same attributes as namespaces/principals.
        case("source.namespace, mTLS", only(vec![cond("source.namespace", &["foo"], &[])]), mtls(SLEEP), admit()),
        case("source.namespace, plaintext", only(vec![cond("source.namespace", &["foo"], &[])]), plain(), refuse()),
        case("source.principal value", only(vec![cond("source.principal", &[SLEEP], &[])]), mtls(SLEEP), admit()),
        case("source.principal notValues *, plaintext", no_principal(), plain(), admit()),
        case("source.principal notValues *, mTLS", no_principal(), mtls(SLEEP), refuse()),
        case("destination.ip, same", dst_ip(), plain(), admit()),
        case("destination.ip, other", dst_ip(), plain().dst("10.0.0.6"), refuse()),
        case("destination.port value", only(vec![cond("destination.port", &["443"], &[])]), plain().port(443), admit()),
        case(
            "destination.port notValue",
            only(vec![cond("destination.port", &[], &["443"])]),
            plain().port(443),
            refuse(),
        ),
        // "A match occurs when … all conditions matches the request."
        case(
            "conditions ANDed",
            only(vec![cond("source.namespace", &["foo"], &[]), cond("destination.port", &["443"], &[])]),
            mtls(SLEEP).port(80),
            refuse(),
        ),
    ]);
}
