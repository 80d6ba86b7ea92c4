//! Shared helpers for the e2e tests: reading what the node proxies recorded, and waiting for
//! conditions (never for fixed times).

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::{Duration, Instant};

use ambit_e2e::{Cluster, Node, Pod};
use anyhow::{Context, bail};
use serde_json::Value;

pub(crate) const MESH: &str = "mesh";
pub(crate) const PLAIN: &str = "plain";
pub(crate) const AMBIENT: (&str, &str) = ("istio.io/dataplane-mode", "ambient");
pub(crate) const PORT: u16 = 8080;

/// A cluster with an enrolled namespace (`mesh`) and a plain one (`plain`).
pub(crate) fn cluster(nodes: usize) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .namespace(MESH, &[AMBIENT])
        .namespace(PLAIN, &[])
        .build()
        .expect("local cluster starts")
}

pub(crate) fn addr(pod: &Pod, port: u16) -> String {
    format!("{}:{port}", pod.ip())
}

/// Polls `check` until it yields `Some`, failing with `what` and the last error after `timeout`.
pub(crate) fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> anyhow::Result<Option<T>>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match check() {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}: {last}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every connection record the node's proxy holds, oldest first.
pub(crate) fn records(node: &Node) -> Vec<Value> {
    match node.admin_get("/connections").expect("admin /connections") {
        Value::Array(records) => records,
        other => panic!("/connections is not an array: {other}"),
    }
}

/// Waits for the record matching `pred` (records are written when a connection closes).
pub(crate) fn record(node: &Node, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(10), what, || Ok(records(node).into_iter().find(|r| pred(r))))
}

pub(crate) fn is(record: &Value, direction: &str, pod: &Pod, original_destination: &str) -> bool {
    record["direction"] == direction
        && record["pod"]["name"] == pod.name()
        && record["originalDestination"] == original_destination
}

/// One eBPF decision counter from `/stats`.
pub(crate) fn counter(node: &Node, name: &str) -> u64 {
    let stats = node.admin_get("/stats").expect("admin /stats");
    stats["counters"][name].as_u64().unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

pub(crate) fn stats(node: &Node) -> Value {
    node.admin_get("/stats").expect("admin /stats")
}

/// The node proxy's view of a pod (from `/config_dump`).
pub(crate) fn pod_view(node: &Node, pod: &Pod) -> anyhow::Result<Value> {
    let dump = node.admin_get("/config_dump")?;
    let pods = dump["pods"].as_array().context("config_dump has no pods array")?;
    match pods.iter().find(|p| p["uid"] == pod.uid()) {
        Some(view) => Ok(view.clone()),
        None => bail!("{} is not known to {}", pod.name(), node.name()),
    }
}

/// Waits until the node proxy reports the pod's capture on (`true`) or off (`false`).
pub(crate) fn wait_enrolled(node: &Node, pod: &Pod, enrolled: bool) {
    wait_for(Duration::from_secs(5), &format!("{} enrolled={enrolled}", pod.name()), || {
        let view = pod_view(node, pod)?;
        Ok((view["enrolled"] == enrolled && view.get("capture").is_some() == enrolled).then_some(()))
    });
}

/// Runs a successful echo exchange from `client` to `to`; returns the testapp's events.
pub(crate) fn echo(client: &Pod, to: &str, bytes: usize) -> Vec<Value> {
    let events = client
        .run_app(&["connect", "--to", to, "--mode", "echo", "--send", &bytes.to_string()])
        .unwrap_or_else(|e| panic!("{} → {to}: {e:#}", client.name()));
    let done = events.iter().find(|e| e["event"] == "done").expect("a done event");
    assert_eq!(done["ok"], true, "{} → {to}: {done}", client.name());
    events
}

pub(crate) fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name} event in {events:?}"))
}

/// The IP part of an `ip:port` string.
pub(crate) fn ip_of(addr: &Value) -> String {
    let s = addr.as_str().unwrap_or_else(|| panic!("not an address: {addr}"));
    let (ip, _) = s.rsplit_once(':').unwrap_or_else(|| panic!("not ip:port: {s}"));
    ip.trim_start_matches('[').trim_end_matches(']').to_owned()
}
