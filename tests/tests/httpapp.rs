//! `ambit-httpapp` on loopback, no root: `serve` on 127.0.0.1 (a port the kernel picks), `load`
//! against it in each protocol, asserting on the load summary and on what the server reports.
//! One test (root) runs it between two pods through the harness helpers.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Output, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::Duration,
};

use ambit_e2e::{Cluster, PodOptions, require_root};
use serde_json::{Value, json};

const APP: &str = env!("CARGO_BIN_EXE_ambit-httpapp");
/// How long to wait for one line of server output (generous: a loaded CI machine).
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `ambit-httpapp serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    events: Receiver<Value>,
}

impl Server {
    fn start(name: &str, protocol: &str) -> Self {
        let mut child = Command::new(APP)
            .args(["serve", "--listen", "127.0.0.1:0", "--name", name, "--protocol", protocol])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting ambit-httpapp serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "raw", "line": line}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let mut server = Self { child, addr: String::new(), events };
        let listening = server.next_event();
        assert_eq!(listening["event"], "listening", "{listening}");
        assert_eq!(listening["protocol"], protocol);
        server.addr = listening["addr"].as_str().expect("listening addr").to_owned();
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn next_event(&self) -> Value {
        match self.events.recv_timeout(EVENT_TIMEOUT) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => panic!("no server event within {EVENT_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server's output ended"),
        }
    }

    /// The next `count` `request` events (each is printed before the answer is sent).
    fn requests(&self, count: usize) -> Vec<Value> {
        let mut found = Vec::new();
        while found.len() < count {
            let event = self.next_event();
            if event["event"] == "request" {
                found.push(event);
            }
        }
        found
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ambit-httpapp load <command>` (words split on whitespace, so headers are written
/// `name:value`) to completion: its events and its output.
fn load(command: &str) -> (Vec<Value>, Output) {
    let args: Vec<&str> = command.split_whitespace().collect();
    let output = Command::new(APP).arg("load").args(&args).output().expect("running ambit-httpapp load");
    let events = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (events, output)
}

/// Runs a load that must complete; its summary and its `response` events.
fn load_ok(command: &str) -> (Value, Vec<Value>) {
    let (events, output) = load(command);
    assert!(output.status.success(), "load {command}: {}\n{events:?}", String::from_utf8_lossy(&output.stderr));
    let (summaries, responses): (Vec<Value>, Vec<Value>) = events.into_iter().partition(|e| e["event"] == "summary");
    assert_eq!(summaries.len(), 1, "one summary: {summaries:?}");
    assert!(responses.iter().all(|e| e["event"] == "response"), "{responses:?}");
    (summaries.into_iter().next().unwrap_or_default(), responses)
}

#[test]
fn http1_keeps_one_connection_per_worker_and_fails_first_as_asked() {
    let server = Server::start("v1", "http");
    let url = server.url("/reviews/1?x=y");
    let (summary, responses) = load_ok(&format!(
        "--url {url} --count 20 --concurrency 2 --protocol http1 --each \
         --authority reviews.bookinfo.svc.cluster.local:9080 \
         --header x-httpapp-fail-first:3 --header x-httpapp-key:shared"
    ));
    assert_eq!(summary["requested"], 20);
    assert_eq!(summary["sent"], 20);
    assert_eq!(summary["statuses"], json!({"503": 3, "200": 17}));
    assert_eq!(summary["servedBy"], json!({"v1": 20}));
    assert_eq!(summary["errors"], json!({}));
    assert_eq!(summary["connections"], 2, "keep-alive: one connection per worker");
    assert!(summary["latencyUs"]["p50"].as_u64().is_some(), "{summary}");
    assert!(summary["latencyUs"]["max"].as_u64() >= summary["latencyUs"]["p99"].as_u64(), "{summary}");

    let mut indexes: Vec<u64> = responses.iter().map(|r| r["i"].as_u64().expect("i")).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..20).collect::<Vec<_>>());
    assert!(responses.iter().all(|r| r["servedBy"] == "v1" && r["error"].is_null()), "{responses:?}");

    let requests = server.requests(20);
    for request in &requests {
        assert_eq!(request["protocol"], "HTTP/1.1");
        assert_eq!(request["authority"], "reviews.bookinfo.svc.cluster.local:9080");
        assert_eq!(request["path"], "/reviews/1?x=y");
        assert_eq!(request["method"], "GET");
        assert_eq!(request["headers"]["x-httpapp-key"], "shared");
    }
    assert_eq!(requests.iter().filter(|r| r["status"] == 503).count(), 3);
}

#[test]
fn h2c_multiplexes_one_connection_and_is_reported_as_http2() {
    let server = Server::start("v2", "http");
    let url = server.url("/ratings");
    let (summary, responses) = load_ok(&format!(
        "--url {url} --count 12 --concurrency 4 --protocol h2c --authority ratings-shadow:9080 \
         --method POST --body-bytes 100 --header x-httpapp-status:201 --header x-request:n{{i}}"
    ));
    assert_eq!(summary["sent"], 12);
    assert_eq!(summary["statuses"], json!({"201": 12}));
    assert_eq!(summary["servedBy"], json!({"v2": 12}));
    assert_eq!(summary["connections"], 1, "one HTTP/2 connection for all workers");
    assert!(responses.is_empty(), "no response events without --each");

    let requests = server.requests(12);
    let mut numbered: Vec<&str> =
        requests.iter().map(|r| r["headers"]["x-request"].as_str().expect("x-request")).collect();
    numbered.sort_unstable();
    numbered.dedup();
    assert_eq!(numbered.len(), 12, "{{i}} differs per request: {numbered:?}");
    for request in &requests {
        assert_eq!(request["protocol"], "HTTP/2");
        assert_eq!(request["authority"], "ratings-shadow:9080");
        assert_eq!(request["method"], "POST");
        assert_eq!(request["bodyBytes"], 100);
        assert_eq!(request["status"], 201);
    }
}

#[test]
fn fail_first_counts_each_key_across_runs_and_connections() {
    let server = Server::start("v1", "http");
    let url = server.url("/");
    let run = format!("--url {url} --count 5 --header x-httpapp-fail-first:1 --header x-httpapp-key:k-{{i}}");
    // The first attempt of every key fails; the retry (same keys, new connection, other protocol) passes.
    let (first, _) = load_ok(&run);
    assert_eq!(first["statuses"], json!({"503": 5}));
    let (second, _) = load_ok(&format!("{run} --protocol h2c"));
    assert_eq!(second["statuses"], json!({"200": 5}));
}

#[test]
fn grpc_statuses_and_metadata_pass_through() {
    let server = Server::start("g1", "grpc");
    let url = server.url("");

    let (ok, responses) = load_ok(&format!(
        "--url {url} --count 4 --concurrency 2 --protocol grpc --each \
         --authority echo.test.svc:50051 --header x-tenant:t{{i}}"
    ));
    assert_eq!(ok["sent"], 4);
    assert_eq!(ok["grpcStatuses"], json!({"0": 4}));
    assert_eq!(ok["servedBy"], json!({"g1": 4}));
    assert_eq!(ok["statuses"], json!({}), "gRPC runs report gRPC statuses");
    assert!(responses.iter().all(|r| r["grpcStatus"] == 0), "{responses:?}");
    for request in server.requests(4) {
        assert_eq!(request["protocol"], "HTTP/2");
        assert_eq!(request["path"], "/ambit.test.Echo/Call");
        assert_eq!(request["authority"], "echo.test.svc:50051");
        assert_eq!(request["grpcStatus"], 0);
        assert!(request["headers"]["x-tenant"].as_str().is_some_and(|t| t.starts_with('t')), "{request}");
    }

    let (unavailable, _) = load_ok(&format!("--url {url} --count 3 --protocol grpc --grpc-fail-with 14"));
    assert_eq!(unavailable["grpcStatuses"], json!({"14": 3}));
    assert_eq!(unavailable["servedBy"], json!({"g1": 3}), "error statuses name the server too");
    assert_eq!(unavailable["errors"], json!({}));
    assert!(server.requests(3).iter().all(|r| r["grpcStatus"] == 14));

    let (retried, _) = load_ok(&format!(
        "--url {url} --count 3 --protocol grpc --header x-httpapp-fail-first:2 --header x-httpapp-key:grpc"
    ));
    assert_eq!(retried["grpcStatuses"], json!({"14": 2, "0": 1}));
}

#[test]
fn transport_failures_are_counted_not_fatal() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    for protocol in ["http1", "h2c", "grpc"] {
        let (summary, responses) = load_ok(&format!("--url http://{closed}/ --count 3 --protocol {protocol} --each"));
        assert_eq!(summary["sent"], 3, "{protocol}: {summary}");
        assert_eq!(summary["errors"], json!({"refused": 3}), "{protocol}: {summary}");
        assert_eq!(summary["latencyUs"]["p50"], Value::Null);
        assert!(responses.iter().all(|r| r["error"] == "refused" && r["detail"].is_string()), "{responses:?}");
    }
}

#[test]
fn slow_answers_time_out_and_the_deadline_ends_the_run() {
    let server = Server::start("slow", "http");
    let url = server.url("/");
    let slow = "--header x-httpapp-delay-ms:60000";
    let (timed_out, _) = load_ok(&format!("--url {url} --count 2 --timeout-ms 200 {slow}"));
    assert_eq!(timed_out["sent"], 2);
    assert_eq!(timed_out["errors"], json!({"timeout": 2}));
    assert_eq!(server.requests(2).len(), 2, "the server saw both before its delay");

    // Without the deadline this run would report five timeouts (--timeout-ms defaults to 30 s).
    let (cut, _) = load_ok(&format!("--url {url} --count 5 --deadline-ms 300 {slow}"));
    assert_eq!(cut["requested"], 5);
    assert_eq!(cut["sent"], 0, "the request in flight at the deadline is not counted: {cut}");
    assert_eq!(cut["errors"], json!({}));
}

#[test]
fn a_fixed_rate_run_sends_every_request() {
    let server = Server::start("v1", "http");
    let url = server.url("/");
    let (summary, _) = load_ok(&format!("--url {url} --count 10 --concurrency 2 --rate 200 --protocol h2c"));
    assert_eq!(summary["sent"], 10);
    assert_eq!(summary["statuses"], json!({"200": 10}));
    assert!(summary["requestsPerSecond"].as_f64().is_some_and(|r| r > 0.0), "{summary}");
}

#[test]
fn bad_usage_exits_2_with_the_reason() {
    for (command, reason) in [
        ("--count 1", "--url is required"),
        ("--url http://127.0.0.1:1/ --count 1 --protocol h3", "--protocol \"h3\""),
        ("--url http://127.0.0.1:1/ --count 1 --protocol grpc --header x-a-bin:1", "x-a-bin"),
    ] {
        let (events, output) = load(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains(reason), "{command}: {stderr}");
        assert!(events.is_empty(), "{events:?}");
    }
}

#[test]
fn pods_run_it_through_the_harness() {
    require_root!();
    let cluster = Cluster::builder().nodes(1).namespace("plain", &[]).start_proxies(false).build().expect("cluster");
    let pod = |name| cluster.add_pod(PodOptions::new(name, "plain").node(0).announce(false)).expect("pod");
    let (client, server) = (pod("client"), pod("server"));
    let serve = server.spawn_httpapp(&["serve", "--listen", "0.0.0.0:8080", "--name", "server"]).expect("serve");
    let url = format!("http://{}:8080/", server.ip());
    for protocol in ["http1", "h2c"] {
        let events =
            client.run_httpapp(&["load", "--url", &url, "--count", "3", "--protocol", protocol]).expect("load");
        let summary = events.last().expect("a summary");
        assert_eq!(summary["statuses"], json!({"200": 3}), "{protocol}: {summary}");
        assert_eq!(summary["servedBy"], json!({"server": 3}), "{protocol}: {summary}");
    }
    let requests = serve.wait_for_count(|e| e["event"] == "request", 6, EVENT_TIMEOUT).expect("request events");
    assert!(requests.iter().all(|r| r["authority"] == format!("{}:8080", server.ip())), "{requests:?}");
}
