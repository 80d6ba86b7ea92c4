//! The node proxy failing and coming back, heavy traffic, and many short connections. Real eBPF
//! and real network namespaces (root required).

mod support;

use std::time::Duration;

use ambit_e2e::{PodOptions, require_root};
use support::*;

#[test]
fn a_killed_node_proxy_fails_closed_and_a_restarted_one_adopts_its_programs() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    let server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let to = addr(&b, PORT);
    echo(&a, &to, 100);
    let accepted = || server.events().iter().filter(|e| e["event"] == "accepted").count();
    let accepted_before = accepted();

    node.kill_proxy();

    // Refused at once, from an enrolled pod and towards one; nothing reaches the app around the proxy.
    for (who, output) in [
        (
            "pod a",
            a.run_app_output(
                &["connect", "--to", &to, "--send", "10", "--timeout-ms", "5000"],
                Duration::from_secs(15),
            ),
        ),
        (
            "the node",
            node.run_app_output(
                &["connect", "--to", &to, "--send", "10", "--timeout-ms", "5000"],
                Duration::from_secs(15),
            ),
        ),
    ] {
        let output = output.unwrap();
        assert!(!output.success(), "{who} → b must fail while the proxy is down: {:?}", output.events);
        let error = output.event("error").unwrap_or_else(|| panic!("no error event: {:?}", output.events));
        // "refused" (a RST), not "timeout": the SYN was answered at once, not dropped.
        assert_eq!(error["kind"], "refused", "{who}: {error}");
    }
    assert_eq!(accepted(), accepted_before, "no connection reached the app while the proxy was down");

    // Restarted without touching the pods (no CNI call): traffic flows again.
    node.start_proxy().unwrap();
    echo(&a, &to, 100);
    node.run_app(&["connect", "--to", &to, "--mode", "echo", "--send", "10"]).unwrap();

    // The kernel's own view: one program per hook, links adopted rather than stacked.
    let dump = node.admin_get("/config_dump").unwrap();
    for (hook, ids) in dump["capture"]["attachedAtRoot"].as_object().unwrap() {
        assert_eq!(ids.as_array().map(Vec::len), Some(1), "{hook}: {ids}");
    }
    for link in dump["capture"]["cgroupLinks"].as_array().unwrap() {
        assert_eq!(link["origin"], "adopted", "{link}");
    }
    for pod in dump["pods"].as_array().unwrap() {
        assert_eq!(pod["skLookupAttached"].as_array().map(Vec::len), Some(1), "{pod}");
        assert_eq!(pod["capture"]["skLookupLink"]["origin"], "adopted", "{pod}");
    }
}

#[test]
fn original_destination_maps_drain_after_many_short_connections() {
    require_root!();
    let cluster = cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1)).unwrap();
    let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    let events = a.run_app(&["connect-many", "--to", &addr(&b, PORT), "--count", "2000"]).unwrap();
    let summary = event(&events, "summary");
    assert_eq!((summary["ok"].as_u64(), summary["failed"].as_u64()), (Some(2000), Some(0)), "{summary}");

    let node = cluster.node(0);
    assert!(counter(node, "sock_ops_rekeyed") >= 2000);
    let maps = wait_for(Duration::from_secs(10), "original-destination maps to drain", || {
        let maps = stats(node)["maps"].clone();
        let live = ["pending", "origDst", "inboundPeers"]
            .iter()
            .map(|m| maps[m].as_u64().ok_or_else(|| anyhow::anyhow!("no map {m} in /stats: {maps}")))
            .sum::<anyhow::Result<u64>>()?;
        Ok((live <= 2).then_some(maps))
    });
    assert!(counter(node, "sock_ops_cleaned_up") >= 2000, "{maps}");
    let remote = stats(cluster.node(1))["maps"].clone();
    assert!(remote["inboundPeers"].as_u64().unwrap() <= 2, "inbound relays unregistered: {remote}");
}

#[test]
fn two_hundred_megabytes_each_way_arrive_intact_with_half_close() {
    require_root!();
    const SIZE: u64 = 200 * 1024 * 1024;
    let cluster = cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(1)).unwrap();
    let _server = c
        .spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "digest", "--reply-bytes", &SIZE.to_string()])
        .unwrap();

    // digest mode: the client sends everything, half-closes, and only then does the server answer
    // with a digest of what it received plus SIZE bytes of its own: both directions are checked
    // byte for byte, and the reply can only arrive if the half-close was carried faithfully.
    let output = a
        .run_app_output(
            &[
                "connect",
                "--to",
                &addr(&c, PORT),
                "--mode",
                "digest",
                "--send",
                &SIZE.to_string(),
                "--reply-bytes",
                &SIZE.to_string(),
                "--timeout-ms",
                "120000",
            ],
            Duration::from_secs(180),
        )
        .unwrap();
    let done = output.event("done").unwrap_or_else(|| panic!("no done event: {:?} {}", output.events, output.stderr));
    assert_eq!(done["ok"], true, "{done}");

    let outbound = record(cluster.node(0), "outbound bulk record", |r| is(r, "outbound", &a, &addr(&c, PORT)));
    assert_eq!(outbound["outcome"], "completed");
    assert_eq!(outbound["bytesFromSource"], SIZE);
    assert!(outbound["bytesToSource"].as_u64().unwrap() > SIZE, "reply plus digest line: {outbound}");
    let inbound = record(cluster.node(1), "inbound bulk record", |r| is(r, "inbound", &c, &addr(&c, PORT)));
    assert_eq!(inbound["bytesFromSource"], SIZE);
    assert_eq!(inbound["bytesToSource"], outbound["bytesToSource"]);
}
