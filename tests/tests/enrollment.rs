//! Enrollment follows Istio ambient's labels and applies to pods that are already running;
//! connections in progress are left alone either way. Real eBPF, real namespaces (root).

mod support;

use std::time::Duration;

use ambit_e2e::{App, Cluster, Pod, PodOptions, require_root};
use support::*;

/// Starts a client that connects, sends half its payload, and waits for `resume` to exist before
/// sending the rest: a connection that spans an enrollment change.
fn paused_client(cluster: &Cluster, client: &Pod, to: &str, resume: &std::path::Path) -> App {
    let app = client
        .spawn_app(&[
            "connect",
            "--to",
            to,
            "--mode",
            "echo",
            "--send",
            "20000",
            "--pause-after",
            "10000",
            "--resume-file",
            resume.to_str().unwrap(),
        ])
        .unwrap();
    app.wait_for(|e| e["event"] == "paused", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.node(0).proxy_log_tail(30)));
    app
}

fn finishes_ok(app: App) -> serde_json::Value {
    let output = app.wait(Duration::from_secs(20)).unwrap();
    let done = output.event("done").cloned().unwrap_or_else(|| panic!("no done event: {:?}", output.events));
    assert_eq!(done["ok"], true, "{done}");
    done
}

#[test]
fn labelling_a_namespace_enrolls_running_pods_and_unlabelling_releases_them() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(0)).unwrap();
    let q = cluster.add_pod(PodOptions::new("q", PLAIN).node(0)).unwrap();
    let _server = q.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let to = addr(&q, PORT);

    echo(&p, &to, 100);
    assert!(records(node).is_empty(), "plain namespace must not be captured");

    // A connection opened before the label change...
    let resume = cluster.run_dir().join("resume-1");
    let before_label = paused_client(&cluster, &p, &to, &resume);

    cluster.set_namespace_labels(PLAIN, &[AMBIENT]).unwrap();
    wait_enrolled(node, &p, true);
    wait_enrolled(node, &q, true);

    // ...keeps working, uncaptured, after it.
    std::fs::write(&resume, b"").unwrap();
    finishes_ok(before_label);
    echo(&p, &to, 100);
    let captured = record(node, "outbound p→q after labelling", |r| is(r, "outbound", &p, &to));
    assert_eq!(captured["bytesFromSource"], 100, "only the new connection is captured");
    assert_eq!(records(node).iter().filter(|r| r["direction"] == "outbound").count(), 1);

    // A captured connection in progress survives unlabelling.
    let resume = cluster.run_dir().join("resume-2");
    let before_unlabel = paused_client(&cluster, &p, &to, &resume);
    cluster.set_namespace_labels(PLAIN, &[]).unwrap();
    wait_enrolled(node, &p, false);
    wait_enrolled(node, &q, false);
    std::fs::write(&resume, b"").unwrap();
    finishes_ok(before_unlabel);
    record(node, "the captured connection completes after unlabelling", |r| {
        is(r, "outbound", &p, &to) && r["bytesFromSource"] == 20000 && r["outcome"] == "completed"
    });

    let outbound_before = records(node).iter().filter(|r| r["direction"] == "outbound").count();
    echo(&p, &to, 100);
    let outbound_after = records(node).iter().filter(|r| r["direction"] == "outbound").count();
    assert_eq!(outbound_after, outbound_before, "released pods are no longer captured");
    assert_eq!(stats(node)["maps"]["pods"], 0);
}

#[test]
fn pod_labels_opt_out_and_opt_in() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let opted_out =
        cluster.add_pod(PodOptions::new("out", MESH).node(0).labels(&[("istio.io/dataplane-mode", "none")])).unwrap();
    let opted_in = cluster.add_pod(PodOptions::new("in", PLAIN).node(0).labels(&[AMBIENT])).unwrap();
    let server = cluster.add_pod(PodOptions::new("server", PLAIN).node(0)).unwrap();
    let _app = server.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let to = addr(&server, PORT);

    let view = pod_view(node, &opted_out).unwrap();
    assert_eq!(view["enrolled"], false);
    assert!(view["reason"].as_str().unwrap().contains("istio.io/dataplane-mode=none"), "{view}");
    echo(&opted_out, &to, 10);

    assert_eq!(pod_view(node, &opted_in).unwrap()["enrolled"], true);
    echo(&opted_in, &to, 10);

    let outbound: Vec<_> = records(node).into_iter().filter(|r| r["direction"] == "outbound").collect();
    assert_eq!(outbound.len(), 1, "{outbound:?}");
    assert_eq!(outbound[0]["pod"]["name"], "in");
}

#[test]
fn deleting_a_pod_removes_its_capture_state() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    assert_eq!(stats(node)["maps"]["pods"], 2);
    let pin = node.bpffs().join("ambit/v1/links/netns").join(b.uid());
    assert!(pin.exists(), "sk_lookup link pinned at {}", pin.display());

    cluster.remove_pod(&b).unwrap();

    assert!(pod_view(node, &b).is_err(), "b is forgotten");
    assert!(!pin.exists(), "b's sk_lookup link is unpinned");
    let maps = &stats(node)["maps"];
    assert_eq!(maps["pods"], 1);
    assert_eq!(maps["listeners"], 2, "only a's two inbound listeners remain: {maps}");
    assert_eq!(pod_view(node, &a).unwrap()["enrolled"], true);
}
