//! Binding, VirtualService choice, route translation, retries, endpoints.

use ambit_common::api::v1::{
    EndpointTransport, HeaderAction, HeaderOperation, HttpRoute, RetryOn, RetryPolicy, forward::PathRewrite,
    http_route::Action, string_matcher::Kind,
};

use super::{CART, cart_http, cluster, compiled, compiled_for, port, table};

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: cart, namespace: shop}}\nspec:\n{spec}"
    )
}

fn forward(route: &HttpRoute) -> &ambit_common::api::v1::Forward {
    match &route.action {
        Some(Action::Forward(f)) => f,
        other => panic!("{other:?}"),
    }
}

fn retry(route: &HttpRoute) -> Option<&RetryPolicy> {
    forward(route).retry.as_ref()
}

fn conditions(policy: &RetryPolicy) -> Vec<RetryOn> {
    policy.retry_on().collect()
}

#[test]
fn services_bind_by_their_own_label_or_their_namespaces() {
    let services = "apiVersion: v1\nkind: Service\nmetadata: {name: opted-out, namespace: shop, labels: {istio.io/use-waypoint: none}}\n\
                    spec: {ports: [{port: 80}]}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: waypoint, namespace: shop, labels: {gateway.istio.io/managed: istio.io-mesh-controller}}\n\
                    spec: {ports: [{port: 15008}]}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop}}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: front, namespace: web}\nspec: {ports: [{port: 80}]}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: own, namespace: web, labels: {istio.io/use-waypoint: w2}}\nspec: {ports: [{port: 80}]}\n---\n\
                    apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: w2, namespace: web, labels: {istio.io/waypoint-for: workload}}\n\
                    spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}\n";
    let tables = |ns: &str, name: &str| -> Vec<String> {
        compiled_for(services, ns, name)
            .into_iter()
            .filter_map(|r| {
                matches!(r.kind, Some(ambit_common::api::v1::resource::Kind::RouteTable(_))).then_some(r.name)
            })
            .collect()
    };
    assert_eq!(
        tables("shop", "waypoint"),
        [CART, "front.web.svc.cluster.local"],
        "namespace labels, cross-namespace; not the waypoint's own Service"
    );
    assert!(tables("web", "w2").is_empty(), "a waypoint for workloads takes no service traffic");
}

#[test]
fn without_a_virtual_service_every_port_gets_the_default_route() {
    let resources = compiled("");
    let cart = table(&resources, CART);
    assert_eq!(cart.virtual_service, "");
    for (p, name) in [(8080, "cart.shop.svc.cluster.local|8080|"), (9090, "cart.shop.svc.cluster.local|9090|")] {
        let routes = port(cart, p);
        assert_eq!(routes.http.len(), 1);
        let route = &routes.http[0];
        assert_eq!((route.name.as_str(), route.r#match.is_none()), ("default", true));
        let f = forward(route);
        assert_eq!((f.clusters[0].cluster.as_str(), f.clusters[0].weight, f.timeout_ms), (name, 100, 0));
        assert_eq!(retry(route).unwrap().attempts, 2);
        assert!(routes.tcp.is_empty(), "HTTP and gRPC ports carry no TCP traffic");
    }
    assert_eq!(port(cart, 9090).protocol(), ambit_common::api::v1::AppProtocol::Grpc, "from the port name prefix");
}

#[test]
fn retries_follow_istios_conversion() {
    let spec = r"
  hosts: [cart]
  http:
  - match: [{uri: {prefix: /none}}]
    route: [{destination: {host: cart}}]
    retries: {attempts: 0}
  - match: [{uri: {prefix: /codes}}]
    route: [{destination: {host: cart}}]
    retries: {attempts: 4, retryOn: '5xx,429,reset', retryIgnorePreviousHosts: false, backoff: 100ms}
  - match: [{uri: {prefix: /gw}}]
    route: [{destination: {host: cart}}]
    retries: {attempts: 1, retryOn: gateway-error}
  - route: [{destination: {host: cart}}]
";
    let resources = compiled(&vs(spec));
    let routes = cart_http(&resources);
    assert_eq!(retry(&routes[0]), None, "attempts: 0 disables retries");
    let codes = retry(&routes[1]).unwrap();
    assert_eq!(conditions(codes), [RetryOn::RetryOn5xx, RetryOn::Reset, RetryOn::RetriableStatusCodes]);
    assert_eq!(codes.retriable_status_codes, [429]);
    assert_eq!((codes.attempts, codes.retry_other_endpoints, codes.backoff_base_interval_ms), (4, false, 100));
    let gateway = retry(&routes[2]).unwrap();
    assert_eq!((conditions(gateway), gateway.retriable_status_codes.is_empty()), (vec![RetryOn::GatewayError], true));
    let default = retry(&routes[3]).unwrap();
    let expected = [
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Unavailable,
        RetryOn::Cancelled,
        RetryOn::RetriableStatusCodes,
    ];
    assert_eq!(
        (default.attempts, conditions(default), default.retriable_status_codes.clone()),
        (2, expected.to_vec(), vec![503])
    );
    assert!(default.retry_other_endpoints);
}

#[test]
fn matches_split_into_routes_and_port_matches_resolve_per_port() {
    let spec = r"
  hosts: [cart]
  http:
  - name: api
    match:
    - {name: v1, uri: {prefix: /v1}, ignoreUriCase: true}
    - {port: 9090, headers: {x-debug: {}}}
    route: [{destination: {host: cart, subset: v1}}]
    rewrite: {uri: /}
  - route: [{destination: {host: cart}}]
  - route: [{destination: {host: cart, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec: {host: cart, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
";
    let resources = compiled(&vs(spec));
    let http = cart_http(&resources);
    assert_eq!(http.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["api.v1", ""], "nothing after a catch-all");
    let m = http[0].r#match.as_ref().unwrap();
    assert_eq!((m.uri.as_ref().unwrap().kind.clone(), m.ignore_uri_case), (Some(Kind::Prefix("/v1".into())), true));
    assert_eq!(forward(&http[0]).path_rewrite, Some(PathRewrite::PrefixRewrite("/".into())));
    assert_eq!(forward(&http[0]).clusters[0].cluster, "cart.shop.svc.cluster.local|8080|v1");
    let grpc = &port(table(&resources, CART), 9090).http;
    assert_eq!(grpc.len(), 3, "the /v1 match is for any port, the header match for 9090 only, then the catch-all");
    assert_eq!(grpc[1].r#match.as_ref().unwrap().headers[0].name, "x-debug");
    assert_eq!(grpc[1].r#match.as_ref().unwrap().headers[0].value, None, "presence");
    assert_eq!(forward(&grpc[1]).clusters[0].cluster, "cart.shop.svc.cluster.local|9090|v1", "the listener port");
    assert!(!resources.iter().any(|r| r.name.ends_with("|v2")), "unreachable routes reference nothing");
}

#[test]
fn header_operations_follow_istios_levels() {
    let spec = r"
  hosts: [cart]
  http:
  - match: [{uri: {prefix: /one}}]
    headers: {request: {set: {X-Route: r, host: from-route}, remove: [x-drop]}}
    route:
    - destination: {host: cart}
      headers: {request: {set: {x-route: d}, add: {x-dest: d}}}
  - headers: {response: {add: {x-resp: r}}}
    route:
    - {destination: {host: cart}, weight: 60, headers: {request: {set: {host: from-dest}}}}
    - {destination: {host: cart}, weight: 40}
    rewrite: {authority: rewritten}
";
    let resources = compiled(&vs(spec));
    let http = cart_http(&resources);
    let op = |action: HeaderAction, name: &str, value: &str| HeaderOperation {
        action: action.into(),
        name: name.into(),
        value: value.into(),
    };
    assert_eq!(
        http[0].request_headers,
        [
            op(HeaderAction::Remove, "x-drop", ""),
            op(HeaderAction::Set, "x-route", "r"),
            op(HeaderAction::Set, "x-route", "d"),
            op(HeaderAction::Append, "x-dest", "d"),
        ],
        "one destination: its operations follow the route's, removals first, pseudo-headers dropped"
    );
    assert_eq!(forward(&http[0]).clusters[0].authority_rewrite, "from-route");
    let weighted = &forward(&http[1]).clusters;
    assert_eq!((weighted[0].weight, weighted[1].weight), (60, 40));
    assert_eq!(
        (weighted[0].authority_rewrite.as_str(), weighted[1].authority_rewrite.as_str()),
        ("from-dest", "rewritten")
    );
    assert!(weighted[0].request_headers.is_empty(), "host became the authority rewrite");
    assert_eq!(http[1].response_headers, [op(HeaderAction::Append, "x-resp", "r")]);
}

#[test]
fn redirects_faults_and_direct_responses() {
    let spec = r"
  hosts: [cart]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /http}}]
    redirect: {scheme: http, port: 80, redirectCode: 308}
  - match: [{uri: {regex: '/teapot/.*'}}]
    directResponse: {status: 418, body: {string: short and stout}}
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 12.5}}}
";
    let resources = compiled(&vs(spec));
    let http = cart_http(&resources);
    let Some(Action::Redirect(r)) = &http[0].action else { panic!() };
    assert_eq!((r.path.as_str(), r.port, r.status), ("/new", 8080, 301));
    let Some(Action::Redirect(r)) = &http[1].action else { panic!() };
    assert_eq!((r.scheme.as_str(), r.port, r.status), ("http", 0, 308), "no explicit :80 for http");
    let Some(Action::DirectResponse(d)) = &http[2].action else { panic!() };
    assert_eq!((d.status, d.body.as_slice()), (418, &b"short and stout"[..]));
    let abort = http[2].fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!(abort.per_million, 125_000);
    assert_eq!(abort.status, Some(ambit_common::api::v1::fault_abort::Status::GrpcStatus(14)));
    assert_eq!(http.len(), 3, "no implicit catch-all after the VirtualService's routes");
}

#[test]
fn source_labels_become_workloads_with_address_and_identity() {
    let spec = r"
  hosts: [cart]
  http:
  - match: [{sourceLabels: {version: v2}}]
    route: [{destination: {host: cart}}]
  - match: [{sourceLabels: {app: nobody}, sourceNamespace: shop}]
    route: [{destination: {host: cart}}]
";
    let resources = compiled(&vs(spec));
    let http = cart_http(&resources);
    let workloads = &http[0].r#match.as_ref().unwrap().source_workloads.as_ref().unwrap().workloads;
    assert_eq!(workloads.len(), 1);
    assert_eq!(workloads[0].uid, "uid-cart-v2");
    assert_eq!(workloads[0].addresses, [vec![10, 1, 0, 2]]);
    assert_eq!(workloads[0].identity, "spiffe://cluster.local/ns/shop/sa/cart");
    let nobody = http[1].r#match.as_ref().unwrap();
    assert_eq!(
        nobody.source_workloads.as_ref().map(|s| s.workloads.len()),
        Some(0),
        "present but empty: matches no one"
    );
    assert_eq!(nobody.source_namespace, "shop");
}

#[test]
fn endpoints_come_from_selected_pods_when_there_is_no_endpoint_slice() {
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cart, namespace: shop}\n\
                spec: {host: cart, subsets: [{name: v2, labels: {version: v2}}]}\n---\n";
    let spec = "  hosts: [cart]\n  http:\n  - route: [{destination: {host: cart, subset: v2}}]\n";
    let resources = compiled(&format!("{rule}{}", vs(spec)));
    let v2 = cluster(&resources, "cart.shop.svc.cluster.local|8080|v2");
    assert_eq!(v2.endpoints.len(), 1);
    let e = &v2.endpoints[0];
    assert_eq!((e.workload_uid.as_str(), e.address.as_slice(), e.port), ("uid-cart-v2", &[10, 1, 0, 2][..], 8001));
    assert_eq!(
        (e.node.as_str(), e.transport()),
        ("node-2", EndpointTransport::Hbone),
        "targetPort `web` resolved per pod"
    );
    assert_eq!(e.identity, "spiffe://cluster.local/ns/shop/sa/cart");
    assert_eq!(v2.destination_rule, "shop/cart");
}

#[test]
fn an_exact_host_beats_a_wildcard_and_export_to_hides_virtual_services() {
    let other = |name: &str, ns: &str, host: &str, export: &str, prefix: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  hosts: ['{host}']\n  exportTo: ['{export}']\n  http:\n  - match: [{{uri: {{prefix: {prefix}}}}}]\n    \
             route: [{{destination: {{host: {CART}}}}}]\n---\n"
        )
    };
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n";
    let wild = other("wild", "shop", "*.shop.svc.cluster.local", "*", "/wild");
    let hidden = other("hidden", "team", CART, ".", "/hidden");
    let resources = compiled(&format!("{ns}{wild}{hidden}"));
    assert_eq!(table(&resources, CART).virtual_service, "shop/wild", "team/hidden is not exported to shop");
    let exact = other("exact", "team", CART, "*", "/exact");
    let resources = compiled(&format!("{ns}{wild}{exact}"));
    assert_eq!(table(&resources, CART).virtual_service, "team/exact");
}

#[test]
fn tcp_ports_get_tcp_routes_and_undeclared_ports_get_both() {
    let extra = r"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}, {name: misc, port: 7000}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432, destinationSubnets: [10.96.0.0/16]}]
    route: [{destination: {host: db}}]
";
    let resources = compiled(extra);
    let db = table(&resources, "db.shop.svc.cluster.local");
    let pg = port(db, 5432);
    assert_eq!((pg.protocol(), pg.http.is_empty()), (ambit_common::api::v1::AppProtocol::Tcp, true));
    let subnet = &pg.tcp[0].matches[0].destination_subnets[0];
    assert_eq!((subnet.address.as_slice(), subnet.prefix_len), (&[10, 96, 0, 0][..], 16));
    assert_eq!(pg.tcp[0].clusters[0].cluster, "db.shop.svc.cluster.local|5432|", "the port the connection came to");
    let misc = port(db, 7000);
    assert_eq!(misc.protocol(), ambit_common::api::v1::AppProtocol::Unspecified, "detected");
    assert_eq!(misc.http[0].name, "default");
    assert!(misc.tcp[0].matches.is_empty(), "the VirtualService's route is for port 5432 only");
    assert_eq!(misc.tcp[0].clusters[0].cluster, "db.shop.svc.cluster.local|7000|");
    assert!(cluster(&resources, "db.shop.svc.cluster.local|7000|").endpoints.is_empty(), "no db pods");
}
