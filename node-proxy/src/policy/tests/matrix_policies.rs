//! Authorization matrix, part 2: how rules combine, how actions combine, empty rules, AUDIT,
//! and what a node proxy cannot evaluate. Quotes are from
//! <https://istio.io/latest/docs/reference/config/security/authorization-policy/>.

use super::*;

#[test]
fn rules_and_sources_combine() {
    let sleep_on_8080 = || vec![allow("p", vec![rule(vec![principals(&[SLEEP])], vec![ports(&[8080])], vec![])])];
    let either_rule = || vec![allow("p", vec![from(vec![namespaces(&["bar"])]), to(vec![ports(&[9090])])])];
    let either_source = vec![allow("p", vec![from(vec![principals(&[ADMIN]), namespaces(&["foo"])])])];
    check(vec![
        // "A match occurs when at least one source, one operation and all conditions matches":
        // from AND to within a rule.
        case("from AND to, both", sleep_on_8080(), mtls(SLEEP), admit()),
        case("from AND to, wrong port", sleep_on_8080(), mtls(SLEEP).port(9090), refuse()),
        case("from AND to, wrong source", sleep_on_8080(), mtls(ADMIN), refuse()),
        // rules: "A match occurs when at least one rule matches the request."
        case("rules ORed, second", either_rule(), mtls(SLEEP).port(9090), admit()),
        case("rules ORed, first", either_rule(), mtls(ADMIN), admit()),
        case("rules ORed, neither", either_rule(), mtls(SLEEP), refuse()),
        // "at least one source": sources are ORed.
        case("sources ORed", either_source, mtls(SLEEP), admit()),
    ]);
}

#[test]
fn actions_combine() {
    let deny_bar = || deny("deny-bar", vec![from(vec![namespaces(&["bar"])])]);
    let allow_all = || allow("allow-all", any_rule());
    let from_ns = |name, ns| allow(name, vec![from(vec![namespaces(&[ns])])]);
    let two_allows = || vec![from_ns("a", "bar"), from_ns("b", "test")];
    check(vec![
        // "If there are any DENY policies that match the request, deny the request."
        case("DENY before ALLOW", vec![allow_all(), deny_bar()], mtls(ADMIN), denied_by("foo/deny-bar")),
        case("DENY not matching", vec![allow_all(), deny_bar()], mtls(SLEEP), allowed_by("foo/allow-all")),
        // "If there are no ALLOW policies for the workload, allow the request."
        case("no policies", vec![], plain(), allowed()),
        case("DENY only, not matching", vec![deny_bar()], mtls(SLEEP), allowed()),
        // "If any of the ALLOW policies match the request, allow the request."
        case("several ALLOW, one matches", two_allows(), mtls(ADMIN), allowed_by("foo/a")),
        case(
            "several ALLOW, other matches",
            vec![from_ns("a", "bar"), from_ns("b", "foo")],
            mtls(SLEEP),
            allowed_by("foo/b"),
        ),
        // "Deny the request."
        case("several ALLOW, none matches", two_allows(), mtls(SLEEP), not_allowed(&["foo/a", "foo/b"])),
    ]);
}

#[test]
fn empty_rules() {
    let allow_nothing = || allow("allow-nothing", vec![]);
    check(vec![
        // rules: "If not set, the match will never occur. This is equivalent to setting a
        // default of deny for the target workloads if the action is ALLOW."
        case("ALLOW without rules, mTLS", vec![allow_nothing()], mtls(SLEEP), not_allowed(&["foo/allow-nothing"])),
        case("ALLOW without rules, plaintext", vec![allow_nothing()], plain(), not_allowed(&["foo/allow-nothing"])),
        // allow-nothing only adds an ALLOW that never matches; another ALLOW still admits.
        case(
            "ALLOW without rules next to allow-all",
            vec![allow_nothing(), allow("allow-all", any_rule())],
            plain(),
            allowed_by("foo/allow-all"),
        ),
        // "An empty rule is always matched": `rules: [{}]` is allow-all.
        case(
            "ALLOW rules [{}]",
            vec![allow("allow-all", any_rule())],
            plain().src("203.0.113.9").port(1),
            allowed_by("foo/allow-all"),
        ),
        // … and DENY `rules: [{}]` is deny-all.
        case(
            "DENY rules [{}]",
            vec![deny("deny-all", any_rule()), allow("allow-all", any_rule())],
            mtls(SLEEP),
            denied_by("foo/deny-all"),
        ),
        // A DENY without rules never matches either.
        case("DENY without rules", vec![deny("deny-nothing", vec![])], mtls(SLEEP), allowed()),
    ]);
}

#[test]
fn audit_policies() {
    let audit_bar = || audit("audit-bar", vec![from(vec![namespaces(&["bar"])])]);
    let audited = |by: Option<&str>| Decision::Allow { audited: true, by: by.map(str::to_owned) };
    check(vec![
        // "AUDIT policies do not affect whether requests are allowed or denied to the workload."
        case("AUDIT only, matching", vec![audit_bar()], mtls(ADMIN), audited(None)),
        case("AUDIT only, not matching", vec![audit_bar()], mtls(SLEEP), allowed()),
        case("AUDIT and ALLOW", vec![audit_bar(), allow("p", any_rule())], mtls(ADMIN), audited(Some("foo/p"))),
        // An AUDIT match does not make the workload's default deny into allow.
        case("AUDIT does not allow", vec![audit_bar(), allow("p", vec![])], mtls(ADMIN), not_allowed(&["foo/p"])),
    ]);
}

#[test]
fn what_a_node_proxy_cannot_evaluate() {
    let header = || cond("request.headers[x-user]", &["jason"], &[]);
    let deny_l7 = deny("deny-l7", vec![to(vec![ports(&[8080]), Operation::default()])]);
    let unknown = Authorization { action: 7, ..allow("future", any_rule()) };
    check(vec![
        // "For a DENY rule, missing attributes are treated as matches" — and an ALLOW rule with
        // them never matches (istiod: "rules matching HTTP attributes are omitted").
        case("unknown when key in ALLOW", vec![allow("p", vec![when(vec![header()])])], mtls(SLEEP), refuse()),
        case("unknown when key in DENY", vec![deny("d", vec![when(vec![header()])])], mtls(SLEEP), denied_by("foo/d")),
        // A DENY `to` whose operation lost its `methods` (the compiler leaves it empty) matches
        // any port: "If we were to remove the `ports` match, all TCP traffic would be denied."
        case("DENY emptied operation", vec![deny_l7], plain().port(9999), denied_by("foo/deny-l7")),
        // An action the proxy does not know fails closed.
        case(
            "unknown action",
            vec![unknown],
            mtls(SLEEP),
            Decision::Deny { by: DenyReason::UnknownAction { policy: "foo/future".into(), action: 7 } },
        ),
    ]);
}
