//! Capture: enrolled pods' connections reach the node proxies in both directions, with exact
//! original destinations, and apps see their real peers. Runs real eBPF in the kernel against
//! network namespaces this test creates (root required; see `require_root!`).

mod support;

use ambit_e2e::{PodOptions, require_root};
use support::*;

#[test]
fn same_node_pod_to_pod_is_captured_both_ways() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    let server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    let events = echo(&a, &addr(&b, PORT), 1000);
    let connected = event(&events, "connected");
    // The app's getpeername shows where it connected, not the proxy's listener.
    assert_eq!(connected["peer"], addr(&b, PORT));
    let client_addr = connected["local"].as_str().unwrap().to_owned();

    let outbound = record(node, "outbound record a→b", |r| is(r, "outbound", &a, &addr(&b, PORT)));
    assert_eq!(outbound["source"], client_addr);
    assert_eq!(outbound["outcome"], "completed");
    assert_eq!((outbound["bytesFromSource"].as_u64(), outbound["bytesToSource"].as_u64()), (Some(1000), Some(1000)));
    let inbound = record(node, "inbound record at b", |r| is(r, "inbound", &b, &addr(&b, PORT)));
    assert_eq!(ip_of(&inbound["source"]), a.ip().to_string());
    assert_eq!(inbound["outcome"], "completed");

    // The server sees the real client's address, not the proxy's in-pod socket.
    let accepted = server.wait_for(|e| e["event"] == "accepted", std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(ip_of(&accepted["peer"]), a.ip().to_string());
    assert_eq!(accepted["peer"], inbound["source"], "accept() shows the relayed client");
    assert_eq!(accepted["getpeername"], inbound["source"]);
}

#[test]
fn cross_node_pod_to_pod_is_captured_at_both_proxies() {
    require_root!();
    let cluster = cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(1)).unwrap();
    let _server = c.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    let events = echo(&a, &addr(&c, PORT), 4096);
    assert_eq!(event(&events, "connected")["peer"], addr(&c, PORT));

    let outbound = record(cluster.node(0), "outbound a→c at node 0", |r| is(r, "outbound", &a, &addr(&c, PORT)));
    assert_eq!(outbound["bytesFromSource"], 4096);
    let inbound = record(cluster.node(1), "inbound at c on node 1", |r| is(r, "inbound", &c, &addr(&c, PORT)));
    assert_eq!(ip_of(&inbound["source"]), a.ip().to_string());
    assert_eq!(inbound["bytesToSource"], 4096);
    // Each proxy only sees its own side.
    assert!(!records(cluster.node(1)).iter().any(|r| r["direction"] == "outbound"));
    assert!(!records(cluster.node(0)).iter().any(|r| r["direction"] == "inbound"));
}

#[test]
fn node_to_enrolled_pod_is_captured_inbound_and_the_app_sees_the_real_client() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    let server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    // Like a kubelet probe: from the node's network namespace, outside the mesh.
    let events = node.run_app(&["connect", "--to", &addr(&b, PORT), "--mode", "echo", "--send", "100"]).unwrap();
    let client_addr = event(&events, "connected")["local"].clone();

    let inbound = record(node, "inbound record at b", |r| is(r, "inbound", &b, &addr(&b, PORT)));
    assert_eq!(inbound["source"], client_addr);
    let accepted = server.wait_for(|e| e["event"] == "accepted", std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(accepted["peer"], client_addr);
    assert_eq!(accepted["getpeername"], client_addr);
    assert!(!records(node).iter().any(|r| r["direction"] == "outbound"), "the node is not in the mesh");
}

#[test]
fn pod_to_its_own_ip_is_not_captured() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let _server = a.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let before = counter(node, "connect_bypass_self");

    let events = echo(&a, &addr(&a, PORT), 100);
    assert_eq!(event(&events, "connected")["peer"], addr(&a, PORT));

    assert_eq!(counter(node, "connect_bypass_self"), before + 1);
    assert!(records(node).is_empty(), "nothing was proxied: {:?}", records(node));
}

#[test]
fn unenrolled_namespace_is_not_captured() {
    require_root!();
    let cluster = cluster(2);
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(0)).unwrap();
    let q = cluster.add_pod(PodOptions::new("q", PLAIN).node(1)).unwrap();
    let _server = q.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let before = counter(cluster.node(0), "connect_bypass_not_enrolled");

    echo(&p, &addr(&q, PORT), 100);

    assert!(counter(cluster.node(0), "connect_bypass_not_enrolled") > before);
    for node in cluster.nodes() {
        assert!(records(node).is_empty(), "{} proxied something: {:?}", node.name(), records(node));
        assert_eq!(counter(node, "lookup_assigned_plaintext"), 0);
    }
    assert_eq!(pod_view(cluster.node(0), &p).unwrap()["enrolled"], false);
}

#[test]
fn dual_stack_socket_connecting_to_an_ipv4_pod_is_captured() {
    require_root!();
    let cluster = cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(1)).unwrap();
    let _server = c.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    let events =
        a.run_app(&["connect", "--to", &addr(&c, PORT), "--ipv6-mapped", "--mode", "echo", "--send", "2000"]).unwrap();
    // An AF_INET6 socket sees the IPv4-mapped form of its real peer.
    assert_eq!(event(&events, "connected")["peer"], format!("[::ffff:{}]:{PORT}", c.ip()));
    assert_eq!(event(&events, "done")["ok"], true);

    let outbound = record(cluster.node(0), "outbound a→c", |r| is(r, "outbound", &a, &addr(&c, PORT)));
    assert_eq!(outbound["bytesFromSource"], 2000);
    record(cluster.node(1), "inbound at c", |r| is(r, "inbound", &c, &addr(&c, PORT)));
    assert_eq!(counter(cluster.node(0), "connect6_mapped_redirected"), 1);
}
