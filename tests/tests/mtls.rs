//! Identity and mTLS: traffic between enrolled pods travels in HBONE tunnels (mutual TLS 1.3 with
//! SPIFFE identities issued by the control plane's CA) — between pods of one node, handed over
//! inside the node proxy under the same policies — PeerAuthentication governs plaintext,
//! AuthorizationPolicy governs all of it, and certificates rotate under load. Real eBPF, real TLS,
//! real network namespaces (root required).

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use ambit_common::identity::{SpiffeId, TrustBundle, testing::TestCa};
use ambit_e2e::{
    Cluster, Pod, PodOptions,
    hbone_client::{ClientCredential, echo_through_tunnel},
    packet_capture::PacketCapture,
    require_root,
    testapp::stream::{DEFAULT_SEED, StreamGen},
    topology::NODE_UPLINK,
};
use support::*;

const HBONE_PORT: u16 = 15008;
const OTHER_PORT: u16 = 9090;

fn mesh_cluster(nodes: usize) -> Cluster {
    mesh_cluster_with(Cluster::builder().nodes(nodes))
}

fn mesh_cluster_with(builder: ambit_e2e::ClusterBuilder) -> Cluster {
    builder
        .control_plane(true)
        .namespace(MESH, &[AMBIENT])
        .namespace(PLAIN, &[])
        .build()
        .expect("local cluster with a control plane starts")
}

fn spiffe(namespace: &str, service_account: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", namespace, service_account).unwrap()
}

fn serve(pod: &Pod, port: u16) -> ambit_e2e::App {
    pod.spawn_app(&["serve", "--listen", &format!("0.0.0.0:{port}"), "--mode", "echo"]).unwrap()
}

/// An echo connection from `pod` to `to` that sends 1000 of its `send` bytes, then waits (up to
/// 30 s) for the file `resume` to exist; returns once it is paused mid-stream.
fn paused_connection(pod: &Pod, to: &str, send: u64, resume: &std::path::Path) -> ambit_e2e::App {
    let (send, resume) = (send.to_string(), resume.to_str().unwrap());
    let args = [
        "connect",
        "--to",
        to,
        "--mode",
        "echo",
        "--send",
        &send,
        "--pause-after",
        "1000",
        "--resume-file",
        resume,
        "--timeout-ms",
        "30000",
    ];
    let app = pod.spawn_app(&args).unwrap();
    wait_for(Duration::from_secs(10), "the connection to pause", || {
        Ok(app.events().iter().any(|e| e["event"] == "paused").then_some(()))
    });
    app
}

/// Whether a small echo exchange from `client` (a pod, or a node's namespace when `None`) to
/// `to` succeeds.
fn connects(cluster: &Cluster, client: Option<&Pod>, to: &str) -> bool {
    let args = ["connect", "--to", to, "--mode", "echo", "--send", "64", "--timeout-ms", "5000"];
    let output = match client {
        Some(pod) => pod.run_app_output(&args, Duration::from_secs(15)),
        None => cluster.node(0).run_app_output(&args, Duration::from_secs(15)),
    };
    output.unwrap().success()
}

#[test]
fn pod_to_pod_traffic_is_tunnelled_with_both_identities() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend")).unwrap();
    let server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    echo(&a, &addr(&b, PORT), 1000);

    let out = record(cluster.node(0), "outbound a→b", |r| is(r, "outbound", &a, &addr(&b, PORT)));
    assert_eq!(out["transport"], "hbone", "{out}");
    assert_eq!(out["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend");
    // The identity the destination proved with its certificate.
    assert_eq!(out["destinationIdentity"], "spiffe://cluster.local/ns/mesh/sa/backend");
    let inbound = record(cluster.node(1), "inbound at b", |r| is(r, "inbound", &b, &addr(&b, PORT)));
    assert_eq!(inbound["transport"], "hbone", "{inbound}");
    // The identity the destination proxy read from the client's certificate.
    assert_eq!(inbound["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend");
    assert_eq!(inbound["destinationIdentity"], "spiffe://cluster.local/ns/mesh/sa/backend");
    assert_eq!(inbound["source"].as_str().map(|s| s.starts_with(&format!("{}:", a.ip()))), Some(true), "{inbound}");

    // Two connections at once share one pooled HBONE connection, yet the app sees two clients:
    // a's IP, each with a port of its own (not the tunnel's one source port twice).
    let resume = cluster.run_dir().join("resume-concurrent");
    let concurrent =
        [paused_connection(&a, &addr(&b, PORT), 2000, &resume), paused_connection(&a, &addr(&b, PORT), 2000, &resume)];
    std::fs::write(resume, "").unwrap();
    for app in concurrent {
        assert!(app.wait(Duration::from_secs(10)).unwrap().success());
    }
    let peers: Vec<serde_json::Value> =
        server.events().iter().filter(|e| e["event"] == "accepted").map(|e| e["getpeername"].clone()).collect();
    let last_two = &peers[peers.len() - 2..];
    assert!(last_two.iter().all(|p| ip_of(p) == a.ip().to_string()), "{peers:?}");
    assert_ne!(last_two[0], last_two[1], "each connection has its own apparent client port: {peers:?}");
}

#[test]
fn same_node_connections_are_handed_over_inside_the_proxy_under_the_same_policies() {
    require_root!();
    let cluster = mesh_cluster(1);
    let node = cluster.node(0);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(0).service_account("batch")).unwrap();
    let b =
        cluster.add_pod(PodOptions::new("b", MESH).node(0).service_account("backend").labels(&[("app", "b")])).unwrap();
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(0)).unwrap();
    let server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    let to_b = addr(&b, PORT);

    // Both pods' records: handed over in the proxy, with both identities; the app sees the
    // client's own address (no tunnel in between to hide its port).
    let echoed = echo(&a, &to_b, 1000);
    let out = record(node, "outbound a→b", |r| is(r, "outbound", &a, &to_b));
    let inbound = record(node, "inbound at b", |r| is(r, "inbound", &b, &to_b));
    for r in [&out, &inbound] {
        assert_eq!(r["transport"], "node_local", "{r}");
        assert_eq!(r["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend", "{r}");
        assert_eq!(r["destinationIdentity"], "spiffe://cluster.local/ns/mesh/sa/backend", "{r}");
        assert_eq!((r["outcome"].as_str(), r["bytesFromSource"].as_u64()), (Some("completed"), Some(1000)), "{r}");
    }
    assert_eq!(inbound["source"], out["source"], "{inbound}");
    let local = &event(&echoed, "connected")["local"];
    assert_eq!(out["source"], *local, "the record's source is the client's socket");
    let accepted = server.events().into_iter().rfind(|e| e["event"] == "accepted").unwrap();
    assert_eq!(accepted["getpeername"], *local, "the app sees the client's exact address: {accepted}");

    // STRICT everywhere and only frontend allowed: the hand-over counts as mutual TLS (the
    // source's identity is known, not claimed), and the policy sees that identity.
    let strict = resource("PeerAuthentication", "istio-system", "default", "mtls:\n  mode: STRICT");
    let allow = resource(
        "AuthorizationPolicy",
        MESH,
        "b-frontend-only",
        "selector:\n  matchLabels:\n    app: b\naction: ALLOW\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/frontend\"]",
    );
    cluster.apply("pa.yaml", &strict, &[("PeerAuthentication", "istio-system", "default")]).unwrap();
    cluster.apply("allow.yaml", &allow, &[("AuthorizationPolicy", MESH, "b-frontend-only")]).unwrap();
    assert!(connects(&cluster, Some(&a), &to_b), "frontend is allowed, STRICT or not");
    assert!(!connects(&cluster, Some(&c), &to_b), "batch is not");
    let denied = record(node, "c's refusal at b", |r| {
        is(r, "inbound", &b, &to_b) && r["sourceIdentity"] == "spiffe://cluster.local/ns/mesh/sa/batch"
    });
    assert_eq!((denied["outcome"].as_str(), denied["transport"].as_str()), (Some("denied"), Some("node_local")));
    assert!(denied["error"].as_str().unwrap().contains("mesh/b-frontend-only"), "{denied}");
    let refused = record(node, "c's outbound", |r| is(r, "outbound", &c, &to_b));
    assert_eq!(refused["outcome"], "denied", "the source's record says so too: {refused}");
    assert!(!connects(&cluster, Some(&p), &to_b), "a pod outside the mesh sends plaintext: STRICT refuses it");

    // A live hand-over is closed when a new policy denies it.
    let resume = cluster.run_dir().join("resume-never");
    let live = paused_connection(&a, &to_b, 100_000, &resume);
    let deny = resource(
        "AuthorizationPolicy",
        MESH,
        "no-frontend",
        "action: DENY\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/frontend\"]",
    );
    cluster.apply("deny.yaml", &deny, &[("AuthorizationPolicy", MESH, "no-frontend")]).unwrap();
    let output = live.wait(Duration::from_secs(10)).expect("the denied connection ends");
    assert!(!output.success(), "the connection was cut, not completed: {:?}", output.events);
    let revoked = record(node, "the revoked hand-over", |r| is(r, "inbound", &b, &to_b) && r["outcome"] == "revoked");
    assert!(revoked["error"].as_str().unwrap().contains("mesh/no-frontend"), "{revoked}");
}

#[test]
fn same_node_connections_can_be_tunnelled_like_cross_node_ones() {
    require_root!();
    let cluster = mesh_cluster_with(Cluster::builder().nodes(1).proxy_args(&["--same-node=hbone"]));
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(0).service_account("backend")).unwrap();
    let _server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    echo(&a, &addr(&b, PORT), 1000);
    let out = record(cluster.node(0), "outbound a→b", |r| is(r, "outbound", &a, &addr(&b, PORT)));
    assert_eq!(
        (out["transport"].as_str(), out["destinationIdentity"].as_str()),
        (Some("hbone"), Some("spiffe://cluster.local/ns/mesh/sa/backend")),
        "{out}"
    );
    let inbound = record(cluster.node(0), "inbound at b", |r| is(r, "inbound", &b, &addr(&b, PORT)));
    assert_eq!(inbound["transport"], "hbone", "{inbound}");
}

#[test]
fn outbound_to_a_pod_outside_the_mesh_is_plain_passthrough() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(1)).unwrap();
    let _server = serve(&p, PORT);
    cluster.wait_converged().unwrap();
    echo(&a, &addr(&p, PORT), 1000);
    let out = record(cluster.node(0), "outbound a→p", |r| is(r, "outbound", &a, &addr(&p, PORT)));
    assert_eq!(out["transport"], "plaintext", "{out}");
    assert_eq!(out["outcome"], "completed", "{out}");
    assert!(out["passthroughReason"].as_str().is_some_and(|r| !r.is_empty()), "{out}");
    assert!(out.get("destinationIdentity").is_none(), "{out}");
}

/// 48-byte pieces of the stream the test app sends (at several offsets of its first block).
fn stream_markers() -> Vec<Vec<u8>> {
    let mut generator = StreamGen::new(DEFAULT_SEED);
    let block = generator.next_block();
    (0..16).map(|i| block[i * 4096..i * 4096 + 48].to_vec()).collect()
}

#[test]
fn traffic_between_nodes_is_tls_on_the_wire() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1)).unwrap();
    let p = cluster.add_pod(PodOptions::new("p", PLAIN).node(0)).unwrap();
    let q = cluster.add_pod(PodOptions::new("q", PLAIN).node(1)).unwrap();
    let (_b_server, _q_server) = (serve(&b, PORT), serve(&q, PORT));
    cluster.wait_converged().unwrap();
    let markers = stream_markers();
    let seen = |captured: &ambit_e2e::packet_capture::Captured| markers.iter().filter(|m| captured.contains(m)).count();

    // Control: outside the mesh the same bytes are visible on node 0's uplink, so the capture
    // can see them when they are there.
    let capture = PacketCapture::start(cluster.node(0).netns(), NODE_UPLINK).unwrap();
    echo(&p, &addr(&q, PORT), 256 * 1024);
    let plain = capture.stop().unwrap();
    assert!(plain.payload_bytes(PORT) >= 2 * 256 * 1024, "the capture saw the plaintext exchange");
    assert_eq!(seen(&plain), markers.len(), "every marker is visible in plaintext");

    let capture = PacketCapture::start(cluster.node(0).netns(), NODE_UPLINK).unwrap();
    echo(&a, &addr(&b, PORT), 256 * 1024);
    let meshed = capture.stop().unwrap();
    assert!(meshed.payload_bytes(HBONE_PORT) >= 2 * 256 * 1024, "the exchange crossed the wire on 15008");
    assert_eq!(meshed.payload_bytes(PORT), 0, "nothing went to the app port directly");
    assert_eq!(seen(&meshed), 0, "application bytes appeared in clear between the nodes");
    // The first bytes on the wire are a TLS handshake record (content type 22, version 3.x).
    let first = meshed.with_port(HBONE_PORT).next().expect("a segment on 15008");
    assert_eq!(&first.payload[..2], &[0x16, 0x03], "not a TLS ClientHello: {:02x?}", &first.payload[..8]);
}

#[test]
fn the_destination_accepts_only_clients_proving_their_own_mesh_identity() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend")).unwrap();
    let _server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    let root = std::fs::read_to_string(cluster.cp().ca_root()).unwrap();
    let key = std::fs::read_to_string(cluster.cp().ca_dir().join("ca.key")).unwrap();
    // The mesh's own CA (its root and key from the control plane's CA directory).
    let ca = TestCa::from_pem("cluster.local", &root, &key).unwrap();
    let bundle = TrustBundle::from_pem(&root).unwrap();
    let backend = spiffe(MESH, "backend");
    let hbone: SocketAddr = format!("{}:{HBONE_PORT}", b.ip()).parse().unwrap();
    let app: SocketAddr = addr(&b, PORT).parse().unwrap();
    let outside = cluster.node(0).netns();
    let hour = Duration::from_secs(3600);
    let attempt = |netns, credential, server_identity: &SpiffeId| {
        echo_through_tunnel(netns, hbone, app, credential, &bundle, server_identity, b"hello through the tunnel")
            .unwrap()
    };

    // Controls: a valid mesh certificate from outside the mesh, and a pod's own one, go through.
    let tester = spiffe("tools", "tester");
    let ok = attempt(outside, ClientCredential::Cert(ca.issue(&tester, hour)), &backend);
    assert_eq!(ok.as_deref(), Ok(&b"hello through the tunnel"[..]), "a valid certificate is accepted");
    let inbound = record(cluster.node(1), "the tester's connection", |r| {
        r["sourceIdentity"] == tester.as_str() && r["outcome"] == "completed"
    });
    assert_eq!(inbound["transport"], "hbone", "{inbound}");
    let frontend_cert = ca.issue(&spiffe(MESH, "frontend"), hour);
    assert!(attempt(a.netns(), ClientCredential::Cert(frontend_cert.clone()), &backend).is_ok(), "a's own identity");

    // The client checks the server: b's proxy proves backend, not what this client expects.
    let wrong = attempt(outside, ClientCredential::Cert(ca.issue(&tester, hour)), &spiffe(MESH, "frontend"));
    let error = wrong.expect_err("a server with another identity is refused by the client");
    assert!(error.contains("backend"), "the refusal names the identity the server presented: {error}");

    let refused = |what: &str, netns, credential| {
        let before = records(cluster.node(1)).len();
        let result = attempt(netns, credential, &backend);
        assert!(result.is_err(), "{what}: the destination accepted it: {result:?}");
        let refusal = wait_for(Duration::from_secs(5), &format!("{what}: a refusal record"), || {
            Ok(records(cluster.node(1)).into_iter().skip(before).find(|r| r["outcome"] != "completed"))
        });
        eprintln!("{what}: client saw {:?}; destination recorded {refusal}", result.unwrap_err());
        refusal
    };
    let self_signed = TestCa::new("cluster.local").issue(&tester, hour);
    let refusal = refused("a self-signed certificate", outside, ClientCredential::Cert(self_signed));
    assert_eq!(refusal["outcome"], "tls_failed", "{refusal}");

    let now = SystemTime::now();
    let expired = ca.issue_with_validity(&tester, now - 2 * hour, now - hour);
    let refusal = refused("an expired certificate", outside, ClientCredential::Cert(expired));
    assert_eq!(refusal["outcome"], "tls_failed", "{refusal}");
    assert!(refusal["error"].as_str().unwrap().to_lowercase().contains("expired"), "{refusal}");

    // Someone with frontend's certificate but not its key.
    let stolen =
        ClientCredential::ForeignKey { chain: frontend_cert.chain().to_vec(), key_from: ca.issue(&tester, hour) };
    let refusal = refused("a certificate without its key", outside, stolen);
    assert_eq!(refusal["outcome"], "tls_failed", "{refusal}");

    // Pod a's address presenting backend's (valid) certificate: another workload's identity.
    let impersonation = ClientCredential::Cert(ca.issue(&backend, hour));
    let refusal = refused("another workload's certificate", a.netns(), impersonation);
    assert_eq!(refusal["outcome"], "denied", "{refusal}");
    let error = refusal["error"].as_str().unwrap();
    assert!(error.contains("mesh/a") && error.contains("sa/frontend"), "names the real workload: {error}");
}

/// A `kind` resource in `namespace` named `name` with `spec` (YAML lines indented by 2).
fn resource(kind: &str, namespace: &str, name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{spec}"
    )
}

#[test]
fn peer_authentication_governs_plaintext_at_mesh_namespace_workload_and_port_scope() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0)).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).labels(&[("app", "b")])).unwrap();
    let (_s1, _s2) = (serve(&b, PORT), serve(&b, OTHER_PORT));
    cluster.wait_converged().unwrap();
    let (main, other) = (addr(&b, PORT), addr(&b, OTHER_PORT));

    // Default PERMISSIVE: plaintext from the node (outside the mesh) is admitted.
    assert!(connects(&cluster, None, &main));
    let inbound = record(cluster.node(1), "plaintext inbound", |r| is(r, "inbound", &b, &main));
    assert_eq!(inbound["transport"], "plaintext", "{inbound}");

    let mesh_strict = resource("PeerAuthentication", "istio-system", "default", "mtls:\n  mode: STRICT");
    cluster.apply("pa-mesh.yaml", &mesh_strict, &[("PeerAuthentication", "istio-system", "default")]).unwrap();
    assert!(!connects(&cluster, None, &main), "mesh-wide STRICT refuses plaintext");
    let denial =
        record(cluster.node(1), "a STRICT refusal", |r| is(r, "inbound", &b, &main) && r["outcome"] == "denied");
    assert!(denial["error"].as_str().unwrap().contains("STRICT"), "{denial}");
    assert!(connects(&cluster, Some(&a), &main), "mTLS from a mesh pod still passes under STRICT");

    // A namespace policy overrides the mesh's; a workload policy overrides the namespace's,
    // and its port-level setting overrides its own mode.
    let ns_permissive = resource("PeerAuthentication", MESH, "default", "mtls:\n  mode: PERMISSIVE");
    cluster.apply("pa-ns.yaml", &ns_permissive, &[("PeerAuthentication", MESH, "default")]).unwrap();
    assert!(connects(&cluster, None, &main), "namespace PERMISSIVE overrides mesh STRICT");

    let workload = resource(
        "PeerAuthentication",
        MESH,
        "b-strict",
        &format!(
            "selector:\n  matchLabels:\n    app: b\nmtls:\n  mode: STRICT\nportLevelMtls:\n  {OTHER_PORT}:\n    mode: PERMISSIVE"
        ),
    );
    cluster.apply("pa-b.yaml", &workload, &[("PeerAuthentication", MESH, "b-strict")]).unwrap();
    assert!(!connects(&cluster, None, &main), "workload STRICT applies to {PORT}");
    assert!(connects(&cluster, None, &other), "the port-level PERMISSIVE on {OTHER_PORT} admits plaintext");

    // DISABLE is treated as PERMISSIVE (as Istio ambient does): plaintext and mTLS both pass.
    let disable = resource(
        "PeerAuthentication",
        MESH,
        "b-disable",
        "selector:\n  matchLabels:\n    app: b\nmtls:\n  mode: DISABLE",
    );
    cluster.unapply("pa-b.yaml", &[("PeerAuthentication", MESH, "b-strict")]).unwrap();
    cluster.unapply("pa-ns.yaml", &[("PeerAuthentication", MESH, "default")]).unwrap();
    assert!(!connects(&cluster, None, &main), "back to mesh-wide STRICT");
    cluster.apply("pa-b.yaml", &disable, &[("PeerAuthentication", MESH, "b-disable")]).unwrap();
    assert!(connects(&cluster, None, &main), "DISABLE admits plaintext");
    assert!(connects(&cluster, Some(&a), &main), "and mTLS");
}

/// One probe of the authorization matrix: `client` (a pod, or the node when `None`) to port.
struct Probe<'a> {
    client: Option<&'a Pod>,
    port: u16,
    allowed: bool,
}

#[test]
fn authorization_policies_decide_real_connections_as_istio_documents() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(0).service_account("batch")).unwrap();
    let o = cluster.add_pod(PodOptions::new("o", "other").node(0).service_account("frontend")).unwrap();
    let b =
        cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend").labels(&[("app", "b")])).unwrap();
    cluster.set_namespace_labels("other", &[AMBIENT]).unwrap();
    let (_s1, _s2) = (serve(&b, PORT), serve(&b, OTHER_PORT));
    cluster.wait_converged().unwrap();
    wait_enrolled(cluster.node(0), &o, true);
    let node_ip = cluster.node(0).uplink_ip();
    let [x, y, _, _] = a.ip().octets();
    let pod_range = format!("{x}.{y}.0.0/16");
    let allow = |client, port| Probe { client, port, allowed: true };
    let deny = |client, port| Probe { client, port, allowed: false };

    let cases: Vec<(&str, String, Vec<Probe<'_>>)> = vec![
        (
            "no policy: everything is allowed",
            String::new(),
            vec![allow(Some(&a), PORT), allow(Some(&c), PORT), allow(Some(&o), PORT), allow(None, PORT)],
        ),
        (
            "ALLOW principals: only frontend in mesh; everyone else (plaintext too) is denied",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "selector:\n  matchLabels:\n    app: b\naction: ALLOW\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/frontend\"]",
            ),
            vec![allow(Some(&a), PORT), deny(Some(&c), PORT), deny(Some(&o), PORT), deny(None, PORT)],
        ),
        (
            "ALLOW namespaces + ports: from namespace other, to 9090 only",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: ALLOW\nrules:\n- from:\n  - source:\n      namespaces: [\"other\"]\n  to:\n  - operation:\n      ports: [\"9090\"]",
            ),
            vec![deny(Some(&o), PORT), allow(Some(&o), OTHER_PORT), deny(Some(&a), OTHER_PORT)],
        ),
        (
            "DENY beats ALLOW: both match frontend in mesh",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: DENY\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/frontend\"]",
            ) + "---\n"
                + &resource(
                    "AuthorizationPolicy",
                    MESH,
                    "q",
                    "action: ALLOW\nrules:\n- from:\n  - source:\n      namespaces: [\"mesh\"]",
                ),
            vec![deny(Some(&a), PORT), allow(Some(&c), PORT), deny(Some(&o), PORT)],
        ),
        (
            "DENY notPrincipals: anyone but batch is denied (plaintext has no principal: denied)",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: DENY\nrules:\n- from:\n  - source:\n      notPrincipals: [\"cluster.local/ns/mesh/sa/batch\"]",
            ),
            vec![allow(Some(&c), PORT), deny(Some(&a), PORT), deny(None, PORT)],
        ),
        (
            "ALLOW without rules matches nothing: everything selected is denied",
            resource("AuthorizationPolicy", MESH, "p", "selector:\n  matchLabels:\n    app: b\naction: ALLOW"),
            vec![deny(Some(&a), PORT), deny(Some(&c), PORT), deny(None, PORT)],
        ),
        (
            "ALLOW with an empty rule matches everything",
            resource("AuthorizationPolicy", MESH, "p", "action: ALLOW\nrules:\n- {}"),
            vec![allow(Some(&a), PORT), allow(None, OTHER_PORT)],
        ),
        (
            "ALLOW ipBlocks: only the node's address",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                &format!("action: ALLOW\nrules:\n- from:\n  - source:\n      ipBlocks: [\"{node_ip}/32\"]"),
            ),
            vec![allow(None, PORT), deny(Some(&a), PORT)],
        ),
        (
            "DENY notIpBlocks + notPorts: from outside node 0's pod range and not to 9090 is denied",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                &format!(
                    "action: DENY\nrules:\n- from:\n  - source:\n      notIpBlocks: [\"{pod_range}\"]\n  to:\n  - operation:\n      notPorts: [\"9090\"]"
                ),
            ),
            vec![allow(Some(&a), PORT), deny(None, PORT), allow(None, OTHER_PORT)],
        ),
        (
            "ALLOW when destination.port and source.namespace",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: ALLOW\nrules:\n- when:\n  - key: destination.port\n    values: [\"9090\"]\n  - key: source.namespace\n    values: [\"mesh\"]",
            ),
            vec![allow(Some(&a), OTHER_PORT), deny(Some(&a), PORT), deny(Some(&o), OTHER_PORT)],
        ),
        (
            "mesh-wide DENY in the root namespace applies to every namespace",
            resource(
                "AuthorizationPolicy",
                "istio-system",
                "p",
                "action: DENY\nrules:\n- from:\n  - source:\n      namespaces: [\"other\"]",
            ),
            vec![deny(Some(&o), PORT), allow(Some(&a), PORT)],
        ),
        (
            "an ALLOW with only L7 attributes fails closed at L4 (Istio: the rule matches nothing)",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: ALLOW\nrules:\n- to:\n  - operation:\n      methods: [\"GET\"]",
            ),
            vec![deny(Some(&a), PORT), deny(None, PORT)],
        ),
        (
            "a DENY with L7 attributes is applied without them (it denies more, never less)",
            resource(
                "AuthorizationPolicy",
                MESH,
                "p",
                "action: DENY\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/batch\"]\n  to:\n  - operation:\n      paths: [\"/admin\"]",
            ),
            vec![deny(Some(&c), PORT), allow(Some(&a), PORT)],
        ),
    ];
    let mut probes = 0;
    let mut applied: Vec<(String, String)> = Vec::new();
    for (i, (what, yaml, expectations)) in cases.iter().enumerate() {
        // Each case replaces the previous one's objects; names are unique per case so the wait
        // for the control plane to take them up is exact.
        let file = format!("authz-{i}.yaml");
        for (old_file, old_yaml) in applied.drain(..) {
            cluster
                .unapply(
                    &old_file,
                    &objects_of(&old_yaml)
                        .iter()
                        .map(|(k, n, m)| (k.as_str(), n.as_str(), m.as_str()))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
        }
        if !yaml.is_empty() {
            let yaml =
                yaml.replace("name: p\n", &format!("name: p{i}\n")).replace("name: q\n", &format!("name: q{i}\n"));
            let objects = objects_of(&yaml);
            let keys: Vec<(&str, &str, &str)> =
                objects.iter().map(|(k, n, m)| (k.as_str(), n.as_str(), m.as_str())).collect();
            cluster.apply(&file, &yaml, &keys).unwrap();
            applied.push((file, yaml));
        }
        for probe in expectations {
            let to = addr(&b, probe.port);
            let who =
                probe.client.map_or("the node (plaintext)".to_owned(), |p| format!("{}/{}", p.namespace(), p.name()));
            let got = connects(&cluster, probe.client, &to);
            assert_eq!(
                got,
                probe.allowed,
                "case {i} ({what}): {who} → {to} should be {}",
                if probe.allowed { "allowed" } else { "denied" }
            );
            probes += 1;
        }
    }
    assert!(probes >= 20, "the matrix has {probes} probes");
    // Denials are recorded with the policy that decided.
    let denied = records(cluster.node(1)).into_iter().filter(|r| r["outcome"] == "denied").collect::<Vec<_>>();
    assert!(denied.iter().any(|r| r["error"].as_str().unwrap_or("").contains("mesh/p3")), "{denied:#?}");
}

/// `(kind, namespace, name)` of each document in `yaml` (as written by [`resource`]).
fn objects_of(yaml: &str) -> Vec<(String, String, String)> {
    yaml.split("---\n")
        .map(|doc| {
            let field = |key: &str| {
                doc.lines().find_map(|l| l.trim().strip_prefix(key)).map(str::trim).unwrap_or_default().to_owned()
            };
            (field("kind:"), field("namespace:"), field("name:"))
        })
        .collect()
}

#[test]
fn a_live_connection_is_closed_when_a_new_policy_denies_it() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let c = cluster.add_pod(PodOptions::new("c", MESH).node(0).service_account("batch")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend")).unwrap();
    let _server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    // Two long-lived connections, both paused mid-stream.
    let resume = cluster.run_dir().join("resume-never");
    let denied_conn = paused_connection(&a, &addr(&b, PORT), 100_000, &resume);
    let kept_conn = paused_connection(&c, &addr(&b, PORT), 100_000, &resume);
    let policy = resource(
        "AuthorizationPolicy",
        MESH,
        "no-frontend",
        "action: DENY\nrules:\n- from:\n  - source:\n      principals: [\"cluster.local/ns/mesh/sa/frontend\"]",
    );
    let started = Instant::now();
    cluster.cp().write_config("deny.yaml", &policy).unwrap();
    let output = denied_conn.wait(Duration::from_secs(10)).expect("the denied connection ends");
    let elapsed = started.elapsed();
    eprintln!("policy written → denied connection closed in {elapsed:?} (control-plane push included)");
    assert!(!output.success(), "the connection was cut, not completed: {:?}", output.events);
    let revoked = record(cluster.node(1), "a revoked record", |r| r["outcome"] == "revoked");
    assert_eq!(revoked["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend", "{revoked}");
    assert!(revoked["error"].as_str().unwrap().contains("mesh/no-frontend"), "{revoked}");
    // The connection the policy still allows is untouched.
    assert!(kept_conn.is_running(), "the allowed connection must stay open");
    assert!(records(cluster.node(1)).iter().all(|r| r["sourceIdentity"] != "spiffe://cluster.local/ns/mesh/sa/batch"));
}

#[test]
fn ten_second_certificates_rotate_under_a_minute_of_traffic_without_a_failure() {
    require_root!();
    let cluster = mesh_cluster_with(Cluster::builder().nodes(2).cert_lifetime(Duration::from_secs(10)));
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend")).unwrap();
    let _server = serve(&b, PORT);
    cluster.wait_converged().unwrap();
    let expiry = |node: usize| -> Vec<u64> {
        let dump = cluster.node(node).admin_get("/config_dump").unwrap();
        dump["identity"]["certificates"].as_array().unwrap().iter().filter_map(|c| c["notAfterUnix"].as_u64()).collect()
    };
    let first = (expiry(0), expiry(1));
    // One continuous connection for a minute (10 KB/s, echoed), and a new connection every 100 ms.
    let long = a
        .spawn_app(&["connect", "--to", &addr(&b, PORT), "--mode", "echo", "--send", "600000", "--rate", "10000"])
        .unwrap();
    let many =
        a.spawn_app(&["connect-many", "--to", &addr(&b, PORT), "--count", "550", "--interval-ms", "100"]).unwrap();
    let long = long.wait(Duration::from_secs(120)).unwrap();
    let many = many.wait(Duration::from_secs(120)).unwrap();
    let done = long.event("done").unwrap_or_else(|| panic!("the long connection failed: {:?}", long.events));
    assert_eq!(done["ok"], true, "{done}");
    assert!(done["elapsedMs"].as_u64().unwrap() >= 55_000, "the connection lasted a minute: {done}");
    let summary = many.event("summary").unwrap_or_else(|| panic!("no summary: {:?}", many.events));
    assert_eq!((summary["ok"].as_u64(), summary["failed"].as_u64()), (Some(550), Some(0)), "{summary}");
    // Certificates were reissued along the way, several times (half-life: every ~5 s).
    let last = (expiry(0), expiry(1));
    assert!(last.0.iter().zip(&first.0).all(|(new, old)| new >= &(old + 40)), "node 0: {first:?} → {last:?}");
    assert!(last.1.iter().zip(&first.1).all(|(new, old)| new >= &(old + 40)), "node 1: {first:?} → {last:?}");
    let issued = cluster.cp().admin_get_raw("/metrics").unwrap().1;
    let count: f64 = issued
        .lines()
        .find_map(|l| l.strip_prefix("ambit_cp_certs_issued_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ambit_cp_certs_issued_total in {issued}"));
    assert!(count >= 20.0, "two identities renewed every ~5 s for a minute: {count} issued");
}
