//! The control plane driving real node proxies: a config directory with the cluster's
//! Namespaces and Pods (what a Kubernetes API server would hold), label edits, bad config, and
//! control-plane outages. Real gRPC, real eBPF, real network namespaces (root required).

mod support;

use std::time::{Duration, Instant};

use ambit_e2e::{Cluster, Pod, PodOptions, require_root};
use serde_json::Value;
use support::*;

fn cp_cluster(nodes: usize) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .control_plane(true)
        .namespace(MESH, &[AMBIENT])
        .namespace(PLAIN, &[])
        .build()
        .expect("local cluster with a control plane starts")
}

fn rejections(cluster: &Cluster) -> Vec<Value> {
    match cluster.cp().admin_get("/rejections").expect("control plane /rejections") {
        Value::Array(list) => list,
        other => panic!("/rejections is not an array: {other}"),
    }
}

#[test]
fn label_edits_enroll_and_release_running_pods_on_their_nodes() {
    require_root!();
    let cluster = cp_cluster(2);
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(0)).unwrap();
    let q = cluster.add_pod(PodOptions::new("q", PLAIN).node(1)).unwrap();
    let _server = q.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    cluster.wait_converged().unwrap();
    echo(&p, &addr(&q, PORT), 10);
    assert!(records(cluster.node(0)).is_empty() && records(cluster.node(1)).is_empty());

    let started = Instant::now();
    cluster.set_namespace_labels(PLAIN, &[AMBIENT]).unwrap();
    wait_enrolled(cluster.node(0), &p, true);
    wait_enrolled(cluster.node(1), &q, true);
    eprintln!("label → both pods enrolled in {:?}", started.elapsed());
    let view = pod_view(cluster.node(0), &p).unwrap();
    assert!(view["reason"].as_str().unwrap().contains("control plane"), "{view}");
    echo(&p, &addr(&q, PORT), 10);
    record(cluster.node(0), "p's outbound at node 0", |r| is(r, "outbound", &p, &addr(&q, PORT)));
    record(cluster.node(1), "q's inbound at node 1", |r| is(r, "inbound", &q, &addr(&q, PORT)));

    let started = Instant::now();
    cluster.set_namespace_labels(PLAIN, &[]).unwrap();
    wait_enrolled(cluster.node(0), &p, false);
    wait_enrolled(cluster.node(1), &q, false);
    eprintln!("unlabel → both pods released in {:?}", started.elapsed());
}

#[test]
fn a_pod_label_in_the_api_server_opts_a_running_pod_out() {
    require_root!();
    let cluster = cp_cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    wait_enrolled(node, &a, true);
    // The CNI never sees labels; the control plane does (here: the Pod object in the config dir).
    let mut spec = a.spec().clone();
    spec.labels.insert("istio.io/dataplane-mode".into(), "none".into());
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": spec.name, "namespace": spec.namespace, "uid": spec.uid, "labels": spec.labels },
        "spec": { "nodeName": spec.node },
        "status": { "phase": "Running", "podIP": a.ip().to_string() },
    });
    cluster.cp().write_config(&format!("pods/{}.{}.yaml", spec.namespace, spec.name), &pod.to_string()).unwrap();
    wait_enrolled(node, &a, false);
    let view = pod_view(node, &a).unwrap();
    assert!(view["reason"].as_str().unwrap().contains("control plane does not capture"), "{view}");
}

/// A bad file for the table: its name, content, and what the one error must mention.
struct Bad {
    file: &'static str,
    yaml: String,
    expect: [&'static str; 2],
}

fn bad(file: &'static str, yaml: impl Into<String>, object: &'static str, field: &'static str) -> Bad {
    Bad { file, yaml: yaml.into(), expect: [object, field] }
}

fn vs(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: mesh}}\nspec:\n{spec}"
    )
}

fn dr(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: mesh}}\nspec:\n{spec}"
    )
}

fn policy(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: mesh}}\nspec:\n{spec}"
    )
}

fn bad_inputs() -> Vec<Bad> {
    let route = |r: &str| vs("web", &format!("  hosts: [web]\n  http:\n  - {r}\n"));
    let to = "route: [{destination: {host: web}}]";
    vec![
        bad("syntax.yaml", "apiVersion: v1\nkind: [Namespace\n", "syntax.yaml", "document 1"),
        bad(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: extra\n  lables: {a: b}\n",
            "Namespace/extra",
            "lables",
        ),
        bad(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Mesh_2\n",
            "Namespace/Mesh_2",
            "metadata.name",
        ),
        bad("vs.yaml", vs("web", "  hosts: [web]\n  htp: []\n"), "VirtualService/mesh/web", "htp"),
        bad("vs.yaml", vs("web", "  hosts: []\n  http: []\n"), "VirtualService/mesh/web", "spec.hosts"),
        bad("vs.yaml", vs("web", "  hosts: web\n"), "VirtualService/mesh/web", "spec.hosts"),
        bad(
            "vs.yaml",
            route(&format!("{{match: [{{uri: {{regex: \"a(\"}}}}], {to}}}")),
            "VirtualService/mesh/web",
            "regex",
        ),
        bad(
            "vs.yaml",
            route("{route: [{destination: {host: web}, weight: 60}, {destination: {host: api}, weight: 30}]}"),
            "VirtualService/mesh/web",
            "weight",
        ),
        bad("vs.yaml", route("{route: [{destination: {host: web, subset: v9}}]}"), "VirtualService/mesh/web", "subset"),
        bad("vs.yaml", route(&format!("{{timeout: 10, {to}}}")), "VirtualService/mesh/web", "timeout"),
        bad(
            "vs.yaml",
            route(&format!("{{retries: {{attempts: 3, perTryTimeout: 2}}, {to}}}")),
            "VirtualService/mesh/web",
            "perTryTimeout",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{retries: {{attempts: 3, retryOn: \"5xx,sometimes\"}}, {to}}}")),
            "VirtualService/mesh/web",
            "retryOn",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{fault: {{abort: {{httpStatus: 700, percentage: {{value: 50}}}}}}, {to}}}")),
            "VirtualService/mesh/web",
            "httpStatus",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{fault: {{delay: {{fixedDelay: 5s, percentage: {{value: 150}}}}}}, {to}}}")),
            "VirtualService/mesh/web",
            "percentage",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{fault: {{abort: {{httpStatus: 503, grpcStatus: UNAVAILABLE}}}}, {to}}}")),
            "VirtualService/mesh/web",
            "abort",
        ),
        bad("vs.yaml", route(&format!("{{redirect: {{uri: /x}}, {to}}}")), "VirtualService/mesh/web", "spec.http[0]"),
        bad(
            "vs.yaml",
            route("{route: [{destination: {host: web, port: {number: 70000}}}]}"),
            "VirtualService/mesh/web",
            "port",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{match: [{{uri: {{exact: /a, prefix: /b}}}}], {to}}}")),
            "VirtualService/mesh/web",
            "uri",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{corsPolicy: {{maxAge: forever}}, {to}}}")),
            "VirtualService/mesh/web",
            "maxAge",
        ),
        bad(
            "vs.yaml",
            route(&format!("{{mirror: {{host: web, subset: nope}}, {to}}}")),
            "VirtualService/mesh/web",
            "mirror",
        ),
        bad(
            "dr.yaml",
            dr("web", "  host: web\n  subsets:\n  - {name: v1, labels: {v: '1'}}\n  - {name: v1, labels: {v: '2'}}\n"),
            "DestinationRule/mesh/web",
            "subsets",
        ),
        bad(
            "dr.yaml",
            dr("web", "  host: web\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n"),
            "DestinationRule/mesh/web",
            "simple",
        ),
        bad(
            "dr.yaml",
            dr(
                "web",
                "  host: web\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}\n",
            ),
            "DestinationRule/mesh/web",
            "consistentHash",
        ),
        bad(
            "dr.yaml",
            dr("web", "  host: web\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 101}\n"),
            "DestinationRule/mesh/web",
            "maxEjectionPercent",
        ),
        bad(
            "dr.yaml",
            dr("web", "  host: web\n  trafficPolicy:\n    connectionPool: {tcp: {connectTimeout: 1x}}\n"),
            "DestinationRule/mesh/web",
            "connectTimeout",
        ),
        bad("dr.yaml", dr("web", "  hots: web\n"), "DestinationRule/mesh/web", "hots"),
        bad(
            "ap.yaml",
            policy("AuthorizationPolicy", "deny", "  action: CUSTOM\n  rules: [{}]\n"),
            "AuthorizationPolicy/mesh/deny",
            "provider",
        ),
        bad(
            "ap.yaml",
            policy(
                "AuthorizationPolicy",
                "deny",
                "  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/33]}}]\n",
            ),
            "AuthorizationPolicy/mesh/deny",
            "ipBlocks",
        ),
        bad(
            "ap.yaml",
            policy(
                "AuthorizationPolicy",
                "deny",
                "  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, group: '', name: web}]\n",
            ),
            "AuthorizationPolicy/mesh/deny",
            "targetRef",
        ),
        bad(
            "ap.yaml",
            policy(
                "AuthorizationPolicy",
                "deny",
                "  action: DENY\n  rules:\n  - when: [{key: request.colour, values: [red]}]\n",
            ),
            "AuthorizationPolicy/mesh/deny",
            "when",
        ),
        bad(
            "pa.yaml",
            policy("PeerAuthentication", "strict", "  mtls: {mode: STRICTEST}\n"),
            "PeerAuthentication/mesh/strict",
            "mode",
        ),
        bad(
            "pa.yaml",
            policy("PeerAuthentication", "strict", "  portLevelMtls: {8080: {mode: STRICT}}\n"),
            "PeerAuthentication/mesh/strict",
            "portLevelMtls",
        ),
        bad(
            "twice.yaml",
            format!("{}---\n{}", dr("dup", "  host: web\n"), dr("dup", "  host: api\n")),
            "DestinationRule/mesh/dup",
            "more than once",
        ),
        bad(
            "huge.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  blob: \"{}\"\n",
                "x".repeat(1_100_000)
            ),
            "huge.yaml",
            "1 MiB",
        ),
    ]
}

#[test]
fn bad_config_is_rejected_clearly_while_traffic_keeps_flowing() {
    require_root!();
    let cluster = cp_cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    // The live namespaces file stays as written by the harness; bad files come and go beside it.
    let cases = bad_inputs();
    assert!(cases.len() >= 30);
    for (i, case) in cases.iter().enumerate() {
        let file = format!("bad/{}", case.file);
        cluster.cp().write_config(&file, &case.yaml).unwrap();
        let found = wait_for(Duration::from_secs(5), &format!("case {i} ({}) to be rejected", case.file), || {
            let list = rejections(&cluster);
            Ok((!list.is_empty()).then_some(list))
        });
        assert_eq!(found.len(), 1, "case {i} ({}): exactly one error expected: {found:#?}", case.file);
        let text = found[0]["text"].as_str().unwrap_or_default();
        for part in case.expect {
            assert!(text.contains(part), "case {i} ({}): {text:?} should mention {part:?}", case.file);
        }
        cluster.cp().remove_config(&file).unwrap();
        wait_for(Duration::from_secs(5), "the rejection to clear", || {
            Ok(rejections(&cluster).is_empty().then_some(()))
        });
        if i % 8 == 0 {
            // The pods stay enrolled under the last good config: traffic is still captured.
            let before = records(node).iter().filter(|r| is(r, "outbound", &a, &addr(&b, PORT))).count();
            echo(&a, &addr(&b, PORT), 10);
            wait_for(Duration::from_secs(5), "a new captured connection", || {
                let now = records(node).iter().filter(|r| is(r, "outbound", &a, &addr(&b, PORT))).count();
                Ok((now > before).then_some(()))
            });
        }
    }
    // The live Namespace itself broken: its last good labels stay in force.
    let broken = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mesh\n  labls: {}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n";
    std::fs::write(cluster.namespaces_file(), broken).unwrap();
    let found = wait_for(Duration::from_secs(5), "the broken namespace to be rejected", || {
        let list = rejections(&cluster);
        Ok((!list.is_empty()).then_some(list))
    });
    assert_eq!(found[0]["lastGoodKept"], true, "{found:#?}");
    echo(&a, &addr(&b, PORT), 10);
    assert_eq!(pod_view(node, &a).unwrap()["enrolled"], true);
}

#[test]
fn a_control_plane_outage_breaks_no_connection_and_proxies_converge_after_it() {
    require_root!();
    let cluster = cp_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1)).unwrap();
    let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    cluster.wait_converged().unwrap();

    // Connections keep being made across the whole outage.
    let load = a.spawn_app(&["connect-many", "--to", &addr(&b, PORT), "--count", "400"]).unwrap();
    cluster.cp().kill();
    // While it is down, config changes wait.
    let late: Pod = cluster.add_pod(PodOptions::new("late", PLAIN).node(0)).unwrap();
    cluster.set_namespace_labels(PLAIN, &[AMBIENT]).unwrap();
    let summary = load.wait(Duration::from_secs(60)).unwrap();
    let summary = summary.event("summary").cloned().unwrap_or_else(|| panic!("no summary: {:?}", summary.events));
    assert_eq!((summary["ok"].as_u64(), summary["failed"].as_u64()), (Some(400), Some(0)), "{summary}");
    // A node proxy restarted while the control plane is down keeps its pods enrolled (its last
    // view is persisted). Certificates live only in memory (as in ztunnel), so until the CA is
    // back it cannot terminate mTLS for them; after that, traffic flows again.
    cluster.node(1).kill_proxy();
    cluster.node(1).start_proxy().unwrap();
    assert_eq!(pod_view(cluster.node(1), &b).unwrap()["enrolled"], true, "persisted view keeps b enrolled");

    cluster.cp().start().unwrap();
    cluster.wait_converged().unwrap();
    echo(&a, &addr(&b, PORT), 10);
    // `late` was judged on the stale namespace labels while the control plane was away (not
    // enrolled); now the control plane, which sees the new label, decides.
    wait_enrolled(cluster.node(0), &late, true);
    let view = pod_view(cluster.node(0), &late).unwrap();
    assert!(view["reason"].as_str().unwrap().contains("control plane"), "{view}");
    let metrics = cluster.cp().admin_get_raw("/metrics").unwrap().1;
    assert!(metrics.contains("ambit_cp_connected_proxies{type=\"node\"} 2"), "{metrics}");
}

#[test]
fn the_bookinfo_examples_load_and_reach_the_proxies() {
    require_root!();
    let cluster = cp_cluster(1);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/tests/fixtures/bookinfo");
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("bookinfo/{}", path.file_name().unwrap().to_string_lossy());
        cluster.cp().write_config(&name, &std::fs::read_to_string(&path).unwrap()).unwrap();
    }
    let dump = wait_for(Duration::from_secs(10), "the bookinfo reviews VirtualService to load", || {
        let dump = cluster.cp().admin_get("/config_dump")?;
        let loaded = dump["objects"].as_array().is_some_and(|objects| {
            objects.iter().any(|o| o["kind"] == "VirtualService" && o["meta"]["name"] == "reviews")
        });
        Ok(loaded.then_some(dump))
    });
    assert!(rejections(&cluster).is_empty(), "{:#?}", rejections(&cluster));
    assert_eq!(dump["status"]["skipped"].as_array().map(Vec::len), Some(0), "{}", dump["status"]["skipped"]);
    cluster.wait_converged().unwrap();
    // What node-0's proxy receives: bookinfo's services with their endpoints.
    let node = cluster.cp().admin_get("/config_dump?proxy=node/node-0").unwrap();
    let services: Vec<&str> = node["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"]["service"]["hostname"].as_str())
        .collect();
    assert!(services.contains(&"reviews.bookinfo.svc.cluster.local"), "{services:?}");
    // And the waypoint its route tables.
    let gateway = dump["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "Gateway").cloned().unwrap();
    let path = format!(
        "/config_dump?proxy=waypoint/{}/{}",
        gateway["meta"]["namespace"].as_str().unwrap(),
        gateway["meta"]["name"].as_str().unwrap()
    );
    let waypoint = cluster.cp().admin_get(&path).unwrap();
    assert!(
        waypoint["resources"].as_array().unwrap().iter().any(|r| r["name"] == "reviews.bookinfo.svc.cluster.local"),
        "{waypoint}"
    );
}
