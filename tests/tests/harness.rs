//! Self-tests of the local cluster harness (no node proxies: plain routed namespaces) and of
//! `ambit-testapp`. They need root; without it they are skipped (and fail in CI).

#[path = "harness/cleanup.rs"]
mod cleanup;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use ambit_e2e::{Cluster, Pod, PodOptions, require_root};
use serde_json::{Value, json};

pub(crate) fn bare_cluster(nodes: usize) -> Cluster {
    Cluster::builder().nodes(nodes).namespace("plain", &[]).start_proxies(false).build().expect("cluster")
}

pub(crate) fn quiet_pod(name: &str, node: usize) -> PodOptions {
    PodOptions::new(name, "plain").node(node).announce(false)
}

/// `"connect --to 1.2.3.4:80"` → `["connect", "--to", "1.2.3.4:80"]`.
fn words(command: &str) -> Vec<&str> {
    command.split_whitespace().collect()
}

fn ip_of(addr: &Value) -> String {
    let addr: SocketAddr = addr.as_str().expect("address").parse().expect("socket address");
    addr.ip().to_string()
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found = events.iter().find(|e| e["event"] == name);
    found.unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

/// A one-node cluster with a client pod and a server pod.
fn client_and_server() -> (Cluster, Pod, Pod) {
    let cluster = bare_cluster(1);
    let client = cluster.add_pod(quiet_pod("client", 0)).unwrap();
    let server = cluster.add_pod(quiet_pod("server", 0)).unwrap();
    (cluster, client, server)
}

#[test]
fn pod_to_pod_same_node_and_cross_node_echo() {
    require_root!();
    let cluster = bare_cluster(2);
    let a = cluster.add_pod(quiet_pod("a", 0)).unwrap();
    let b = cluster.add_pod(quiet_pod("b", 0)).unwrap();
    let c = cluster.add_pod(quiet_pod("c", 1)).unwrap();
    let ips = [a.ip(), b.ip(), c.ip()].map(|ip| ip.to_string());
    assert_eq!(ips, ["10.1.0.2", "10.1.0.3", "10.2.0.2"]);
    for server in [&b, &c] {
        let app = server.spawn_app(&words("serve --listen 0.0.0.0:8080 --mode echo")).unwrap();
        let to = format!("{}:8080", server.ip());
        let events = a.run_app(&words(&format!("connect --to {to} --send 100000"))).unwrap();
        let done = event(&events, "done");
        assert_eq!((&done["ok"], &done["received"]), (&true.into(), &100_000.into()), "{done}");
        let accepted = app.wait_for(|e| e["event"] == "accepted", Duration::from_secs(5)).unwrap();
        assert_eq!(ip_of(&accepted["peer"]), a.ip().to_string(), "{accepted}");
        assert_eq!(accepted["getpeername"], accepted["peer"], "{accepted}");
        assert_eq!(accepted["local"], Value::String(to), "{accepted}");
    }
}

#[test]
fn node_netns_reaches_pods() {
    require_root!();
    let cluster = bare_cluster(2);
    let pod = cluster.add_pod(quiet_pod("web", 1)).unwrap();
    let app = pod.spawn_app(&words("serve --listen 0.0.0.0:9000")).unwrap();
    let connect = format!("connect --to {}:9000 --send 5000", pod.ip());
    for node in cluster.nodes() {
        let events = node.run_app(&words(&connect)).unwrap();
        assert_eq!(event(&events, "done")["ok"], true, "{events:?}");
    }
    let accepted = app.wait_for_count(|e| e["event"] == "accepted", 2, Duration::from_secs(5));
    let peers: Vec<String> = accepted.unwrap().iter().map(|e| ip_of(&e["peer"])).collect();
    // From the other node over the fabric; from the pod's own node, from the link-local gateway.
    assert_eq!(peers, ["172.30.0.1", "169.254.1.1"]);
}

#[test]
fn testapp_digest_mode_verifies_both_directions() {
    require_root!();
    let (_cluster, client, server) = client_and_server();
    let serve = "serve --listen 0.0.0.0:7000 --mode digest --reply-bytes 300001";
    let _server = server.spawn_app(&words(serve)).unwrap();
    let to = format!("{}:7000", server.ip());
    let connect = format!("connect --to {to} --mode digest --send 1000003 --reply-bytes 300001");
    let events = client.run_app(&words(&connect)).unwrap();
    let done = event(&events, "done");
    let got = [&done["ok"], &done["serverBytes"], &done["replyBytes"]];
    assert_eq!(got, [&json!(true), &json!(1_000_003), &json!(300_001)], "{done}");

    // A client expecting another reply length notices, and says so.
    let connect = format!("connect --to {to} --mode digest --send 10 --reply-bytes 5");
    let out = client.run_app_output(&words(&connect), Duration::from_secs(30)).unwrap();
    assert!(!out.success());
    assert_eq!(event(&out.events, "done")["ok"], false);
}

#[test]
fn testapp_ipv6_mapped_and_connect_many() {
    require_root!();
    let (_cluster, client, server) = client_and_server();
    let _server = server.spawn_app(&words("serve --listen 0.0.0.0:7001")).unwrap();
    let to = format!("{}:7001", server.ip());
    let events = client.run_app(&words(&format!("connect --to {to} --send 77777 --ipv6-mapped"))).unwrap();
    let peer = event(&events, "connected")["peer"].as_str().unwrap().to_owned();
    assert_eq!(peer, format!("[::ffff:{}]:7001", server.ip()), "{events:?}");
    assert_eq!(event(&events, "done")["ok"], true);

    let events = client.run_app(&words(&format!("connect-many --to {to} --count 50"))).unwrap();
    let summary = event(&events, "summary");
    assert_eq!((&summary["ok"], &summary["failed"]), (&50.into(), &0.into()), "{summary}");
}

#[test]
fn testapp_pauses_until_the_resume_file_appears() {
    require_root!();
    let (cluster, client, server) = client_and_server();
    let _server = server.spawn_app(&words("serve --listen 0.0.0.0:7002")).unwrap();
    let resume = cluster.run_dir().join("resume");
    let connect =
        format!("connect --to {}:7002 --send 10000 --pause-after 4000 --resume-file {}", server.ip(), resume.display());
    let app = client.spawn_app(&words(&connect)).unwrap();
    let paused = app.wait_for(|e| e["event"] == "paused", Duration::from_secs(10)).unwrap();
    assert_eq!(paused["sent"], 4000);
    std::thread::sleep(Duration::from_millis(100));
    assert!(app.is_running(), "must wait for the resume file");
    std::fs::write(&resume, b"").unwrap();
    let out = app.wait(Duration::from_secs(10)).unwrap();
    let done = event(&out.events, "done");
    assert_eq!((&done["ok"], &done["received"]), (&json!(true), &json!(10000)), "{done}");
}

#[test]
fn testapp_reports_errors() {
    require_root!();
    let (_cluster, client, server) = client_and_server();
    let refused = format!("{}:7999", server.ip());
    let limit = Duration::from_secs(10);
    let out = client.run_app_output(&words(&format!("connect --to {refused}")), limit).unwrap();
    assert!(!out.success());
    assert_eq!(event(&out.events, "error")["kind"], "refused", "{:?}", out.events);

    let many = format!("connect-many --to {refused} --count 3");
    let out = client.run_app_output(&words(&many), limit).unwrap();
    assert_eq!(event(&out.events, "summary")["errors"]["refused"], 3, "{:?}", out.events);

    let err = client.run_app(&words(&format!("connect --to {refused}"))).unwrap_err();
    assert!(format!("{err:#}").contains("refused"), "{err:#}");

    let out = client.run_app_output(&["bogus"], limit).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("usage"), "{}", out.stderr);
}

#[test]
fn echo_200mb_pod_to_pod_is_byte_identical() {
    require_root!();
    let (_cluster, client, server) = client_and_server();
    let _server = server.spawn_app(&words("serve --listen 0.0.0.0:8080")).unwrap();
    let connect = format!("connect --to {}:8080 --send 209715200", server.ip());
    let started = Instant::now();
    let events = client.run_app(&words(&connect)).unwrap();
    let wall = started.elapsed();
    let done = event(&events, "done");
    assert_eq!((&done["ok"], &done["received"]), (&true.into(), &209_715_200u64.into()), "{done}");
    assert_eq!(done["sentDigest"], done["receivedDigest"]);
    eprintln!("200 MiB echo: {} ms in the app, {wall:?} wall", done["elapsedMs"]);
}

#[test]
fn adding_an_announced_pod_without_a_node_proxy_fails_clearly() {
    require_root!();
    let cluster = bare_cluster(1);
    let Err(err) = cluster.add_pod(PodOptions::new("a", "plain")) else {
        panic!("announcing without a node proxy must fail");
    };
    let err = err.to_string();
    assert!(err.contains("node proxy is not running") && err.contains("announce(false)"), "{err}");
    // Nothing was left behind, and the name is still free.
    assert_eq!(cluster.run().manifest().netns.len(), 2, "fabric and node only");
    cluster.add_pod(quiet_pod("a", 0)).unwrap();
    let err = cluster.node(0).admin_get("/stats").expect_err("no admin API without a node proxy");
    assert!(format!("{err:#}").contains("admin API"), "{err:#}");
}

/// Needs the node-proxy binary (`cargo xtask test` builds it first).
#[test]
fn node_proxy_smoke() {
    require_root!();
    let cluster = Cluster::builder()
        .nodes(2)
        .namespace("mesh", &[("istio.io/dataplane-mode", "ambient")])
        .namespace("plain", &[])
        .build()
        .unwrap();
    let node = cluster.node(0);
    assert!(node.proxy_pid().is_some());
    let a = cluster.add_pod(PodOptions::new("a", "mesh").labels(&[("app", "a")])).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", "plain").node(1)).unwrap();
    let _server = b.spawn_app(&words("serve --listen 0.0.0.0:8080")).unwrap();
    let connect = format!("connect --to {}:8080 --send 100000", b.ip());
    assert_eq!(event(&a.run_app(&words(&connect)).unwrap(), "done")["ok"], true);
    for path in ["/config_dump", "/stats", "/connections"] {
        eprintln!("{path}: {}", node.admin_get(path).unwrap());
    }
    cluster.set_namespace_labels("plain", &[("istio.io/dataplane-mode", "ambient")]).unwrap();
    assert!(node.kill_proxy().is_some());
    assert!(node.proxy_pid().is_none());
    node.start_proxy().unwrap();
    cluster.remove_pod(&a).unwrap();
    assert!(node.proxy_log().contains("ambit harness: starting"));
}
