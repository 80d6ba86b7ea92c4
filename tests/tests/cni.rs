//! The CNI plugin and the pod-event API: real `ambit-cni` invocations against a real node proxy,
//! and bad input that must be refused with a message naming the field. Root required.

mod support;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use ambit_common::pod_api::ClientError;
use ambit_e2e::{Node, Pod, PodOptions, config, require_root};
use serde_json::{Value, json};
use support::*;

/// Runs `ambit-cni` the way a container runtime does; returns (exit ok, stdout as JSON if any).
fn cni(command: &str, node: &Node, pod: &Pod) -> (bool, Option<Value>) {
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "ambit-cni",
        "socket": node.api_socket(),
        "nodeName": node.name(),
        "prevResult": { "cniVersion": "1.0.0", "ips": [{ "address": format!("{}/32", pod.ip()) }] },
    });
    let mut child = Command::new(config::binary("ambit-cni").unwrap())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "c0ffee")
        .env("CNI_NETNS", pod.netns_path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_UID={}",
                pod.namespace(),
                pod.name(),
                pod.uid()
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (output.status.success(), serde_json::from_str(stdout.trim()).ok())
}

#[test]
fn cni_add_check_del_drive_enrollment() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let server = cluster.add_pod(PodOptions::new("server", PLAIN).node(0)).unwrap();
    let _app = server.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    let pod = cluster.add_pod(PodOptions::new("web", MESH).node(0).announce(false)).unwrap();

    let (ok, out) = cni("ADD", node, &pod);
    assert!(ok, "ADD failed: {out:?}");
    assert_eq!(out.unwrap()["ips"][0]["address"], format!("{}/32", pod.ip()), "prevResult passed through");
    assert_eq!(pod_view(node, &pod).unwrap()["enrolled"], true);
    echo(&pod, &addr(&server, PORT), 10);
    record(node, "outbound from the CNI-added pod", |r| is(r, "outbound", &pod, &addr(&server, PORT)));

    assert!(cni("CHECK", node, &pod).0, "CHECK of a known pod succeeds");
    let (ok, _) = cni("DEL", node, &pod);
    assert!(ok);
    assert!(pod_view(node, &pod).is_err(), "DEL forgets the pod");
    let (ok, out) = cni("CHECK", node, &pod);
    assert!(!ok);
    assert_eq!(out.unwrap()["code"], 100);
    assert!(cni("DEL", node, &pod).0, "DEL is idempotent");

    let (ok, out) = cni("VERSION", node, &pod);
    assert!(ok);
    assert!(out.unwrap()["supportedVersions"].as_array().unwrap().contains(&json!("1.0.0")));
}

#[test]
fn cni_add_without_a_node_proxy_asks_to_try_again() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let pod = cluster.add_pod(PodOptions::new("web", MESH).node(0).announce(false)).unwrap();
    node.kill_proxy();
    let (ok, out) = cni("ADD", node, &pod);
    assert!(!ok);
    let error = out.unwrap();
    assert_eq!(error["code"], 11, "{error}");
    assert!(error["msg"].as_str().unwrap().contains("is the node proxy running"), "{error}");
    assert!(cni("DEL", node, &pod).0, "DEL succeeds without a node proxy");
}

#[test]
fn pod_api_refuses_bad_pods_naming_the_field() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let pod = cluster.add_pod(PodOptions::new("ok", MESH).node(0)).unwrap();
    let api = node.pod_api();
    let refused = |spec: &ambit_common::pod_api::PodSpec| match api.add(spec) {
        Err(ClientError::Status { status, message }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    };

    let mut bad = pod.spec().clone();
    bad.uid = "other-uid".into();
    bad.namespace = "Bad_Namespace".into();
    let (status, message) = refused(&bad);
    assert_eq!(status, 400);
    assert!(message.contains("field namespace"), "{message}");

    let mut bad = pod.spec().clone();
    bad.uid = "other-uid-2".into();
    bad.node = "some-other-node".into();
    let (status, message) = refused(&bad);
    assert_eq!(status, 400);
    assert!(message.contains("scheduled on node some-other-node"), "{message}");

    let mut bad = pod.spec().clone();
    bad.uid = "other-uid-3".into();
    bad.ips = vec!["fd00::1".parse().unwrap()];
    assert!(refused(&bad).1.contains("field ips"));

    // Unknown fields and malformed JSON, through the raw API.
    let raw = |body: &str| {
        let mut stream = std::os::unix::net::UnixStream::connect(node.api_socket()).unwrap();
        write!(
            stream,
            "POST /v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        response
    };
    let mut with_typo = serde_json::to_value(pod.spec()).unwrap();
    with_typo["uid"] = "other-uid-4".into();
    with_typo["serviceAcount"] = "x".into();
    assert!(raw(&with_typo.to_string()).contains("unknown field `serviceAcount`"));
    assert!(raw("{not json").contains("invalid pod"));

    // None of it disturbed the pod that was already there.
    assert_eq!(pod_view(node, &pod).unwrap()["enrolled"], true);
    assert_eq!(stats(node)["maps"]["pods"], 1);
}

#[test]
fn an_invalid_namespace_file_keeps_the_last_good_enrollment() {
    require_root!();
    let cluster = cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0)).unwrap();
    let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();

    std::fs::write(
        cluster.namespaces_file(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mesh\n  lables: {}\n",
    )
    .unwrap();
    let error = wait_for(Duration::from_secs(5), "the namespace file to be rejected", || {
        let dump = node.admin_get("/config_dump")?;
        Ok(dump["clusterSource"]["file"]["error"].as_str().map(str::to_owned))
    });
    assert!(error.contains("lables") && error.contains("namespaces.yaml"), "{error}");

    // Still enrolled on the last good labels: traffic is still captured.
    echo(&a, &addr(&b, PORT), 10);
    record(node, "captured under the last good config", |r| is(r, "outbound", &a, &addr(&b, PORT)));
    assert_eq!(pod_view(node, &a).unwrap()["enrolled"], true);

    // A node proxy restarted while the file is broken keeps the last good labels too.
    node.kill_proxy();
    node.start_proxy().unwrap();
    assert_eq!(pod_view(node, &a).unwrap()["enrolled"], true);

    cluster.set_namespace_labels(MESH, &[AMBIENT]).unwrap();
    wait_for(Duration::from_secs(5), "the error to clear", || {
        Ok(node.admin_get("/config_dump")?["clusterSource"]["file"].get("error").is_none().then_some(()))
    });
}
