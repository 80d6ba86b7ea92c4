//! A table of bad inputs. Each yields exactly one error whose text names the object (or, when
//! no object could be read, the document) and the field, and the valid document beside it
//! still loads.

use ambit_common::config::{ConfigStore, Kind, ObjectRef, parse_documents};

/// A valid DestinationRule that sits beside every bad document.
const GOOD: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
";

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: bookinfo}}\nspec:\n{spec}"
    )
}

fn vs_route(route: &str) -> String {
    vs(&format!("  hosts: [reviews]\n  http:\n  - {route}\n"))
}

fn dr(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{spec}"
    )
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: policy, namespace: bookinfo}}\nspec:\n{spec}"
    )
}

const TO_V1: &str = "route: [{destination: {host: reviews, subset: v1}}]";

struct Case {
    name: &'static str,
    yaml: String,
    /// Substrings the one error's text must contain: the object (or document) and the field.
    expect: Vec<&'static str>,
    /// Objects that must still load (the good DestinationRule, plus any others in the case).
    valid: usize,
}

fn case(name: &'static str, bad: String, expect: &[&'static str]) -> Case {
    Case { name, yaml: format!("{GOOD}---\n{bad}"), expect: expect.to_vec(), valid: 1 }
}

fn cases() -> Vec<Case> {
    let huge = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
        "x".repeat(1_100_000)
    );
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}1{}\n",
        "[".repeat(70),
        "]".repeat(70)
    );
    vec![
        case("bad YAML syntax", "apiVersion: v1\nkind: Namespace\nmetadata: {name: [oops\n".into(), &["case.yaml document 2", "invalid YAML"]),
        case("not a mapping", "- just\n- a list\n".into(), &["case.yaml document 2", "not a mapping"]),
        case("unknown field at top level", format!("{}extra: 1\n", vs_route(TO_V1)), &["VirtualService/bookinfo/reviews: unknown field `extra`"]),
        case("unknown field in spec", vs("  hosts: [reviews]\n  htp: []\n"), &["VirtualService/bookinfo/reviews: spec: unknown field `htp`", "did you mean `http`"]),
        case("unknown field deep in a route", vs_route("route: [{destination: {host: reviews}, weigth: 100}]"), &["VirtualService/bookinfo/reviews: spec.http[0].route[0]: unknown field `weigth`", "did you mean `weight`"]),
        case("typo in metadata", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo, lables: {a: b}}\nspec: {hosts: [reviews]}\n".into(), &["VirtualService/bookinfo/reviews: metadata: unknown field `lables`", "did you mean `labels`"]),
        case("wrong type", vs_route("route: [{destination: {host: reviews}, weight: seventy}]"), &["VirtualService/bookinfo/reviews: spec.http[0].route[0].weight: invalid type"]),
        case("bad regex", vs_route(&format!("match: [{{uri: {{regex: \"(unclosed\"}}}}]\n    {TO_V1}")), &["VirtualService/bookinfo/reviews: spec.http[0].match[0].uri.regex: invalid regex"]),
        case("weights do not sum to 100", vs_route("route: [{destination: {host: reviews, subset: v1}, weight: 60}, {destination: {host: reviews, subset: v2}, weight: 30}]"), &["VirtualService/bookinfo/reviews: spec.http[0].route: weights sum to 90; they must sum to 100"]),
        case("missing subset (cross-object)", vs_route("route: [{destination: {host: reviews, subset: v4}}]"), &["VirtualService/bookinfo/reviews: spec.http[0].route[0].destination.subset: subset \"v4\"", "define v1, v2, v3"]),
        case("missing subset of a mirror", vs_route(&format!("{TO_V1}\n    mirror: {{host: reviews, subset: shadow}}")), &["VirtualService/bookinfo/reviews: spec.http[0].mirror.subset", "\"shadow\""]),
        case("duplicate names", format!("{}---\n{}", vs_route(TO_V1), vs_route(TO_V1)), &["VirtualService/bookinfo/reviews: defined more than once", "document 2", "document 3"]),
        case("duplicate subset names", dr("ratings", "  host: ratings\n  subsets: [{name: v1}, {name: v1}]\n"), &["DestinationRule/bookinfo/ratings: spec.subsets[1].name: duplicate subset name \"v1\""]),
        case("two DestinationRules for one host", dr("reviews-again", "  host: reviews.bookinfo.svc.cluster.local\n  subsets: [{name: v9}]\n"), &["DestinationRule/bookinfo/reviews-again: spec.host", "already has DestinationRule/bookinfo/reviews"]),
        case("huge document", huge, &["case.yaml document 2", "the limit is 1048576"]),
        case("nested too deep", deep, &["case.yaml document 2", "nests deeper than 64"]),
        case("duration without unit", vs_route(&format!("{TO_V1}\n    timeout: 10")), &["VirtualService/bookinfo/reviews: spec.http[0].timeout: duration \"10\" has no unit; write e.g. 10s"]),
        case("negative port", vs_route("route: [{destination: {host: reviews, port: {number: -1}}}]"), &["VirtualService/bookinfo/reviews: spec.http[0].route[0].destination.port.number: port -1 is out of range"]),
        case("oversized port", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: bookinfo}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 70000, name: https, protocol: TLS}]\n  resolution: DNS\n".into(), &["ServiceEntry/bookinfo/ext: spec.ports[0].number: port 70000 is out of range"]),
        case("percentage over 100", vs_route(&format!("{TO_V1}\n    fault: {{delay: {{fixedDelay: 5s, percentage: {{value: 120}}}}}}")), &["VirtualService/bookinfo/reviews: spec.http[0].fault.delay.percentage.value: percentage 120 is not in range 0..100"]),
        case("abort with httpStatus and grpcStatus", vs_route(&format!("{TO_V1}\n    fault: {{abort: {{httpStatus: 503, grpcStatus: UNAVAILABLE}}}}")), &["VirtualService/bookinfo/reviews: spec.http[0].fault.abort: httpStatus and grpcStatus are mutually exclusive"]),
        case("route and redirect together", vs_route(&format!("{TO_V1}\n    redirect: {{uri: /v2}}")), &["VirtualService/bookinfo/reviews: spec.http[0]: route and redirect are mutually exclusive"]),
        case("empty hosts", vs(&format!("  hosts: []\n  http:\n  - {TO_V1}\n")), &["VirtualService/bookinfo/reviews: spec.hosts: a VirtualService must list at least one host"]),
        case("invalid CIDR", ap("  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/33]}}]\n"), &["AuthorizationPolicy/bookinfo/policy: spec.rules[0].from[0].source.ipBlocks[0]", "prefix length"]),
        case("CUSTOM without provider", ap("  action: CUSTOM\n  rules: [{}]\n"), &["AuthorizationPolicy/bookinfo/policy: spec.provider.name: action CUSTOM needs provider.name"]),
        case("CUSTOM is unsupported", ap("  action: CUSTOM\n  provider: {name: ext-authz}\n  rules: [{}]\n"), &["AuthorizationPolicy/bookinfo/policy: spec.action: action CUSTOM (external authorization) is not supported by Ambit"]),
        case("selector and targetRef together", ap("  selector: {matchLabels: {app: reviews}}\n  targetRef: {kind: Service, group: \"\", name: reviews}\n"), &["AuthorizationPolicy/bookinfo/policy: spec: selector and targetRef are mutually exclusive"]),
        case("unknown when key", ap("  rules:\n  - when: [{key: source.ipp, values: [10.0.0.1]}]\n"), &["AuthorizationPolicy/bookinfo/policy: spec.rules[0].when[0].key: unknown attribute \"source.ipp\""]),
        case("portLevelMtls without selector", "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: bookinfo}\nspec:\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n".into(), &["PeerAuthentication/bookinfo/default: spec.portLevelMtls: portLevelMtls needs a workload selector"]),
        case("invalid retryOn", vs_route(&format!("{TO_V1}\n    retries: {{attempts: 2, retryOn: \"5xx,5xxx\"}}")), &["VirtualService/bookinfo/reviews: spec.http[0].retries.retryOn: \"5xxx\" is not a valid retryOn policy"]),
        case("bad abort httpStatus", vs_route(&format!("{TO_V1}\n    fault: {{abort: {{httpStatus: 700, percentage: {{value: 1}}}}}}")), &["VirtualService/bookinfo/reviews: spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in range 200..599"]),
        case("invalid gRPC status name", vs_route(&format!("{TO_V1}\n    fault: {{abort: {{grpcStatus: NOT_A_STATUS}}}}")), &["VirtualService/bookinfo/reviews: spec.http[0].fault.abort.grpcStatus: gRPC status \"NOT_A_STATUS\" is not supported"]),
        case("consistentHash with two keys", dr("ratings", "  host: ratings\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user, useSourceIp: true}\n"), &["DestinationRule/bookinfo/ratings: spec.trafficPolicy.loadBalancer.consistentHash: httpHeaderName and useSourceIp are mutually exclusive"]),
        case("bad label key", dr("ratings", "  host: ratings\n  subsets: [{name: v1, labels: {\"-version\": v1}}]\n"), &["DestinationRule/bookinfo/ratings: spec.subsets[0].labels: invalid label key \"-version\""]),
        case("unknown load balancer", dr("ratings", "  host: ratings\n  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n"), &["DestinationRule/bookinfo/ratings: spec.trafficPolicy.loadBalancer.simple: \"FASTEST\" is not one of"]),
        case("duplicate portLevelSettings", dr("ratings", "  host: ratings\n  trafficPolicy:\n    portLevelSettings:\n    - {port: {number: 9080}, loadBalancer: {simple: RANDOM}}\n    - {port: {number: 9080}, loadBalancer: {simple: ROUND_ROBIN}}\n"), &["DestinationRule/bookinfo/ratings: spec.trafficPolicy.portLevelSettings[1].port.number: port 9080 already has settings"]),
        case("unsupported delegate", vs_route("delegate: {name: reviews-v2, namespace: bookinfo}"), &["VirtualService/bookinfo/reviews: spec.http[0].delegate: delegate (VirtualService chaining) is not supported by Ambit"]),
        case("unsupported TLS routes", vs("  hosts: [reviews]\n  tls:\n  - match: [{sniHosts: [reviews]}]\n    route: [{destination: {host: reviews}}]\n"), &["VirtualService/bookinfo/reviews: spec.tls: SNI-based TLS routing (spec.tls) is not supported by Ambit"]),
        case("two kinds in one string match", vs_route(&format!("match: [{{uri: {{exact: /a, prefix: /b}}}}]\n    {TO_V1}")), &["VirtualService/bookinfo/reviews: spec.http[0].match[0].uri: string match must set only one of exact, prefix or regex"]),
        case("redirect code not 3xx", vs_route("redirect: {uri: /v2, redirectCode: 200}"), &["VirtualService/bookinfo/reviews: spec.http[0].redirect.redirectCode: 200 is not a valid redirect code"]),
        case("missing name", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {namespace: bookinfo}\nspec: {hosts: [reviews]}\n".into(), &["case.yaml document 2", "metadata.name: every VirtualService needs a name"]),
        case("invalid namespace name", "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: Bookinfo}\n".into(), &["Service/Bookinfo/reviews: metadata.namespace: namespace \"Bookinfo\" is invalid"]),
        Case {
            name: "List with a bad item",
            yaml: format!(
                "{GOOD}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {{name: good-item, namespace: bookinfo}}\n  spec: {{hosts: [ratings], http: [{{route: [{{destination: {{host: ratings}}}}]}}]}}\n- apiVersion: networking.istio.io/v1\n  kind: VirtualService\n  metadata: {{name: bad-item, namespace: bookinfo}}\n  spec: {{hosts: [details], http: [{{route: [{{destination: {{host: details}}, weight: 101}}]}}]}}\n"
            ),
            expect: vec!["VirtualService/bookinfo/bad-item: spec.http[0].route[0].weight: weight 101 is not in range 0..100", "document 2 items[1]"],
            valid: 2,
        },
    ]
}

#[test]
fn every_bad_input_yields_one_clear_error() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = parse_documents(&case.yaml, "case.yaml");
        let mut store = ConfigStore::new();
        let snapshot = store.apply(outcome);
        let errors: Vec<String> = store.rejections().iter().map(|r| r.error.to_string()).collect();
        let good = snapshot.get(&ObjectRef::new(Kind::DestinationRule, "bookinfo", "reviews")).is_some();
        let ok = errors.len() == 1
            && case.expect.iter().all(|e| errors[0].contains(e))
            && good
            && snapshot.len() == case.valid;
        if !ok {
            failures.push(format!(
                "{}: errors {errors:#?}, {} objects loaded (want {})",
                case.name,
                snapshot.len(),
                case.valid
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn errors_point_at_the_line_in_the_file() {
    let text = format!("{GOOD}---\n{}", vs_route("route: [{destination: {host: reviews}, weigth: 100}]"));
    let outcome = parse_documents(&text, "reviews.yaml");
    let origin = outcome.errors[0].origin.clone().unwrap();
    assert_eq!((origin.source.as_str(), origin.document, origin.line), ("reviews.yaml", 2, Some(17)));
    assert!(outcome.errors[0].to_string().ends_with("(in reviews.yaml document 2 line 17)"), "{}", outcome.errors[0]);
}
