//! Identity and mTLS: traffic between enrolled pods travels in HBONE tunnels (mutual TLS 1.3 with
//! SPIFFE identities issued by the control plane's CA). Real eBPF, real TLS, real network
//! namespaces (root required).

mod support;

use ambit_e2e::{Cluster, PodOptions, require_root};
use support::*;

fn mesh_cluster(nodes: usize) -> Cluster {
    Cluster::builder()
        .nodes(nodes)
        .control_plane(true)
        .namespace(MESH, &[AMBIENT])
        .namespace(PLAIN, &[])
        .build()
        .expect("local cluster with a control plane starts")
}

#[test]
fn pod_to_pod_traffic_is_tunnelled_with_both_identities() {
    require_root!();
    let cluster = mesh_cluster(2);
    let a = cluster.add_pod(PodOptions::new("a", MESH).node(0).service_account("frontend")).unwrap();
    let b = cluster.add_pod(PodOptions::new("b", MESH).node(1).service_account("backend")).unwrap();
    let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080", "--mode", "echo"]).unwrap();
    cluster.wait_converged().unwrap();
    wait_enrolled(cluster.node(0), &a, true);
    echo(&a, &addr(&b, PORT), 1000);

    let out = record(cluster.node(0), "outbound a→b", |r| is(r, "outbound", &a, &addr(&b, PORT)));
    assert_eq!(out["transport"], "hbone", "{out}");
    assert_eq!(out["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend");
    assert_eq!(out["destinationIdentity"], "spiffe://cluster.local/ns/mesh/sa/backend");
    let inbound = record(cluster.node(1), "inbound at b", |r| is(r, "inbound", &b, &addr(&b, PORT)));
    assert_eq!(inbound["transport"], "hbone", "{inbound}");
    // The identity the destination proxy proved from the client's certificate.
    assert_eq!(inbound["sourceIdentity"], "spiffe://cluster.local/ns/mesh/sa/frontend");
    assert_eq!(inbound["destinationIdentity"], "spiffe://cluster.local/ns/mesh/sa/backend");
}
