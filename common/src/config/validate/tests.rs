//! Validation rules beyond the bad-input table in `tests/config_bad_input.rs`.

use crate::config::{
    model::*,
    parse::{ParseOutcome, parse_documents},
};

fn one(text: &str) -> Object {
    let outcome = parse_documents(text, "t.yaml");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    outcome.objects.into_iter().next().unwrap().object
}

fn error(text: &str) -> String {
    let ParseOutcome { errors, .. } = parse_documents(text, "t.yaml");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].to_string()
}

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v, namespace: ns}}\nspec:\n  hosts: [r]\n  http:\n{http}"
    )
}

fn vs_model(http: &str) -> VirtualService {
    match one(&vs(http)) {
        Object::VirtualService(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn weights_follow_istio() {
    // A lone destination gets 100, whatever it says.
    let v = vs_model("  - route: [{destination: {host: r}, weight: 10}]\n");
    let RouteAction::Route(d) = &v.http[0].action else { panic!() };
    assert_eq!(d[0].weight, 100);
    // With several, an omitted weight is 0; they must still sum to 100.
    let v = vs_model("  - route: [{destination: {host: r}, weight: 100}, {destination: {host: s}}]\n");
    let RouteAction::Route(d) = &v.http[0].action else { panic!() };
    assert_eq!((d[0].weight, d[1].weight), (100, 0));
    let e = error(&vs("  - route: [{destination: {host: r}}, {destination: {host: s}}]\n"));
    assert!(e.contains("weights sum to 0 (an omitted weight counts as 0)"), "{e}");
    assert!(
        error(&vs("  - route: [{destination: {host: r}, weight: -1}, {destination: {host: s}, weight: 101}]\n"))
            .contains("spec.http[0].route[0].weight: weight -1 is not in range 0..100")
    );
}

#[test]
fn header_matches_allow_presence() {
    let v = vs_model(
        "  - match: [{headers: {x-canary: {}, end-user: {prefix: ja}}, withoutHeaders: {x-debug: null}}]\n    route: [{destination: {host: r}}]\n",
    );
    let m = &v.http[0].matches[0];
    assert_eq!(m.headers["x-canary"], ValueMatch::Present);
    assert_eq!(m.headers["end-user"], ValueMatch::Is(StringMatch::Prefix("ja".into())));
    assert_eq!(m.without_headers["x-debug"], ValueMatch::Present);
    assert!(
        error(&vs("  - match: [{headers: {\"bad header\": {exact: x}}}]\n    route: [{destination: {host: r}}]\n"))
            .contains("spec.http[0].match[0].headers[bad header]")
    );
}

#[test]
fn route_policies_parse_into_types() {
    let v = vs_model(
        "  - route: [{destination: {host: r, port: {number: 9080}}, headers: {request: {set: {x-a: b}}, response: {remove: [x-c]}}}]
    timeout: 0s
    retries: {attempts: 2, retryOn: \"gateway-error, 503 ,cancelled\", perTryTimeout: 250ms, backoff: 25ms}
    rewrite: {uriRegexRewrite: {match: ^/old(/.*)$, rewrite: /new\\\\1}}
    corsPolicy: {allowOrigins: [{exact: https://a.example}], allowMethods: [GET], maxAge: 24h, allowCredentials: true}
    mirrors: [{destination: {host: r, subset: shadow}, percentage: {value: 5}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 1}}, delay: {fixedDelay: 1.5s, percent: 10}}
",
    );
    let r = &v.http[0];
    assert_eq!(r.timeout, Some(crate::config::Duration::ZERO));
    let retry = r.retries.as_ref().unwrap();
    assert_eq!(retry.retry_on, [RetryOn::GatewayError, RetryOn::Status(503), RetryOn::Cancelled]);
    assert_eq!(retry.backoff.unwrap().as_std().as_millis(), 25);
    let Some(UriRewrite::Regex { pattern, .. }) = &r.rewrite.as_ref().unwrap().uri else { panic!() };
    assert!(pattern.is_match("/old/x"));
    let cors = r.cors.as_ref().unwrap();
    assert_eq!(
        (cors.max_age.unwrap().as_std().as_secs(), cors.unmatched_preflights),
        (86_400, UnmatchedPreflights::Forward)
    );
    assert_eq!(r.mirrors[0].percentage.value(), 5.0);
    let fault = r.fault.as_ref().unwrap();
    assert_eq!(fault.abort.as_ref().unwrap().error, AbortError::GrpcStatus(GrpcStatus::Unavailable));
    assert_eq!(fault.delay.as_ref().unwrap().percentage.value(), 10.0);
    let RouteAction::Route(d) = &r.action else { panic!() };
    assert_eq!(d[0].destination.port, Some(9080));
    assert_eq!(d[0].headers.request.set["x-a"], "b");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["http"][0]["retries"]["retryOn"][0], "gateway-error");
    assert_eq!(json["http"][0]["timeout"], "0s");
}

#[test]
fn redirects_and_direct_responses() {
    let v = vs_model(
        "  - redirect: {uri: /v2, derivePort: FROM_REQUEST_PORT}\n  - directResponse: {status: 503, body: {bytes: aGVsbG8=}}\n",
    );
    let RouteAction::Redirect(r) = &v.http[0].action else { panic!() };
    assert_eq!((r.code, r.port.clone()), (301, Some(RedirectPort::FromRequestPort)));
    let RouteAction::DirectResponse(d) = &v.http[1].action else { panic!() };
    assert_eq!((d.status, d.body.clone()), (503, Some(Body::Bytes(b"hello".to_vec()))));
    assert!(
        error(&vs("  - redirect: {uri: /a}\n    fault: {abort: {httpStatus: 500}}\n"))
            .contains("redirect and fault are mutually exclusive")
    );
    assert!(error(&vs("  - redirect: {port: 80, derivePort: FROM_REQUEST_PORT}\n")).contains("port and derivePort"));
    assert!(error(&vs("  - timeout: 1s\n")).contains("needs one of route, redirect or directResponse"));
    assert!(
        error(&vs("  - route: [{destination: {host: r}}]\n    retries: {attempts: 0, retryOn: 5xx}\n"))
            .contains("attempts is 0")
    );
    assert!(
        error(&vs("  - route: [{destination: {host: r}}]\n    fault: {abort: {http2Error: x}}\n"))
            .contains("not supported by Ambit")
    );
}

#[test]
fn tcp_routes_and_hosts() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [db.example.com, 10.0.0.9]\n  tcp:\n  - match: [{port: 5432, destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: db-a}, weight: 80}, {destination: {host: db-b}, weight: 20}]\n";
    let Object::VirtualService(v) = one(text) else { panic!() };
    assert_eq!(v.meta.namespace, "default");
    assert_eq!(v.tcp[0].matches[0].port, Some(5432));
    assert_eq!(v.tcp[0].route[1].weight, 20);
    let dup = text.replace("10.0.0.9", "\"*.example.com\"");
    assert!(error(&dup).contains("duplicate hosts"));
    assert!(error(&text.replace("10.0.0.9", "\"*\"")).contains("wildcard host"));
    assert!(error(&text.replace("db.example.com", "Bad_Host")).contains("spec.hosts[0]"));
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: ns}}\nspec:\n{spec}"
    )
}

#[test]
fn consistent_hash_and_locality() {
    let Object::DestinationRule(d) = one(&dr(
        "  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {tableSize: 65537}}\n      localityLbSetting: {distribute: [{from: us-west/*, to: {us-west/*: 80, us-east/*: 20}}]}\n",
    )) else {
        panic!()
    };
    let lb = d.traffic_policy.unwrap().load_balancer.unwrap();
    let Some(LoadBalancer::ConsistentHash(ch)) = lb.algorithm else { panic!() };
    assert_eq!(ch.algorithm, HashAlgorithm::Maglev { table_size: 65537 });
    assert!(matches!(ch.key, HashKey::HttpCookie { ref name, .. } if name == "user"));
    assert_eq!(lb.locality.unwrap().distribute[0].to["us-west/*"], 80);
    assert!(error(&dr("  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}}\n")).contains("prime"));
    assert!(
        error(&dr("  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: false}}}\n"))
            .contains("needs one key")
    );
    assert!(
        error(&dr(
            "  host: r\n  trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}\n"
        ))
        .contains("simple and consistentHash")
    );
    assert!(error(&dr("  host: r\n  trafficPolicy: {}\n")).contains("at least one field"));
}

#[test]
fn connection_pools_and_tls() {
    assert!(error(&dr("  host: r\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}\n")).contains("useClientProtocol"));
    assert!(
        error(&dr("  host: r\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}\n"))
            .contains("spec.trafficPolicy.connectionPool.tcp.maxConnections")
    );
    assert!(
        error(&dr("  host: r\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, privateKey: /k}}\n"))
            .contains("ISTIO_MUTUAL")
    );
    assert!(
        error(&dr("  host: r\n  trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}\n"))
            .contains("splitExternalLocalOriginErrors")
    );
    assert!(
        error(&dr("  host: r\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 1.5ms}}}\n"))
            .contains("finer than 1ms")
    );
    assert!(
        error(&dr("  host: r\n  workloadSelector: {matchLabels: {app: a}}\n  exportTo: [\"*\"]\n"))
            .contains("own namespace")
    );
}

#[test]
fn service_entries() {
    let se = |spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {{name: e, namespace: ns}}\nspec:\n{spec}"
        )
    };
    let Object::ServiceEntry(e) = one(&se(
        "  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: tls}]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {https: 8443}}]\n  exportTo: [\".\"]\n",
    )) else {
        panic!()
    };
    assert_eq!(e.ports[0].protocol.as_deref(), Some("TLS"));
    assert_eq!(e.endpoints[0].ports["https"], 8443);
    assert_eq!(e.export_to, ExportTo::Namespaces(vec!["ns".into()]));
    assert!(
        error(&se("  hosts: [a.com]\n  resolution: NONE\n  endpoints: [{address: 1.2.3.4}]\n"))
            .contains("resolution NONE")
    );
    assert!(
        error(&se("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {http: 80}}]\n"))
            .contains("not a port of this ServiceEntry")
    );
    assert!(error(&se("  hosts: [a.com]\n  addresses: [10.0.0.0/8]\n  resolution: DNS\n")).contains("CIDR"));
    assert!(
        error(&se("  hosts: [a.com]\n  ports: [{number: 80, name: http}, {number: 81, name: http}]\n"))
            .contains("already defined")
    );
    assert!(error(&se("  hosts: [a.com]\n  exportTo: [\"*\", ns]\n")).contains("cannot be combined"));
}

#[test]
fn authorization_policies() {
    let ap = |spec: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
        )
    };
    let Object::AuthorizationPolicy(p) = one(&ap(
        "  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules:\n  - from: [{source: {notNamespaces: [ns]}}]\n    when: [{key: \"request.headers[x-token]\", values: [abc]}, {key: destination.port, notValues: [\"22\"]}, {key: source.ip, values: [10.0.0.0/8]}]\n",
    )) else {
        panic!()
    };
    assert_eq!(p.action, AuthorizationAction::Deny);
    assert!(matches!(p.scope, PolicyScope::Selector(_)));
    assert_eq!(p.rules[0].when[0].key, ConditionKey::RequestHeader("x-token".into()));
    let Object::AuthorizationPolicy(all) = one(&ap("  {}\n")) else { panic!() };
    assert_eq!((all.scope, all.action, all.rules.len()), (PolicyScope::Namespace, AuthorizationAction::Allow, 0));
    assert!(error(&ap("  action: DENY\n")).contains("DENY policy without rules"));
    assert!(
        error(&ap("  rules: [{when: [{key: \"request.headers[]\", values: [a]}]}]\n"))
            .contains("request.headers[name]")
    );
    assert!(error(&ap("  rules: [{when: [{key: destination.port, values: [http]}]}]\n")).contains("not a number"));
    assert!(error(&ap("  rules: [{from: [{source: {}}]}]\n")).contains("source must not be empty"));
    assert!(
        error(&ap("  rules: [{from: [{source: {serviceAccounts: [a], namespaces: [b]}}]}]\n"))
            .contains("serviceAccounts cannot be combined")
    );
    assert!(error(&ap("  targetRefs: [{kind: Deployment, name: x}]\n")).contains("targetRef must be"));
    assert!(error(&ap("  provider: {name: x}\n")).contains("only used with action CUSTOM"));
}

#[test]
fn peer_authentication_ports() {
    let pa = |spec: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
        )
    };
    let Object::PeerAuthentication(p) = one(&pa(
        "  selector: {matchLabels: {app: a}}\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    \"9090\": {mode: UNSET}\n",
    )) else {
        panic!()
    };
    assert_eq!(p.mtls, Some(MtlsMode::Permissive));
    assert_eq!(p.port_level_mtls[&8080], Some(MtlsMode::Disable));
    assert_eq!(p.port_level_mtls[&9090], None);
    assert!(
        error(&pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {0: {mode: STRICT}}\n"))
            .contains("port 0 is out of range")
    );
    assert!(error(&pa("  mtls: {mode: STRIKT}\n")).contains("spec.mtls.mode: \"STRIKT\" is not one of"));
    assert!(error(&pa("  selector: {matchLabels: {app: \"a*\"}}\n")).contains("wildcards"));
}

#[test]
fn kubernetes_objects() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns, labels: {istio.io/use-waypoint: none}}\nspec: {clusterIP: None, ports: [{port: 80, targetPort: http}, {port: 81, targetPort: \"8081\"}]}\n";
    let Object::Service(s) = one(svc) else { panic!() };
    assert!(s.headless && s.cluster_ips.is_empty() && s.waypoint.is_none() && s.selector.is_none());
    assert_eq!(s.ports[0].target_port, TargetPort::Name("http".into()));
    assert_eq!(s.ports[1].target_port, TargetPort::Number(8081));
    let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, namespace: ns}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: false}}]\n";
    let Object::EndpointSlice(e) = one(slice) else { panic!() };
    assert_eq!((e.endpoints[0].ready, e.endpoints[0].serving, e.endpoints[0].terminating), (false, false, false));
    assert!(error(&slice.replace("IPv4", "FQDN")).contains("not supported by Ambit"));
    assert!(error(&slice.replace("10.0.0.1", "10.0.0.256")).contains("endpoints[0].addresses[0]"));
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 0}]}]}\n";
    assert!(error(pod).contains("Pod/default/p: spec.containers[0].ports[0].containerPort"));
}
