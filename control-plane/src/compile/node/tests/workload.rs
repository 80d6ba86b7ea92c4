//! Workloads: which pods, enrollment, addresses, canonical names, waypoint bindings.

use super::{compiled, gateway, ip, namespace, pod, workload, workloads};
use crate::compile::node::workload::{canonical_name, canonical_revision, workload_name};

const AMBIENT: &str = "istio.io/dataplane-mode: ambient";

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

#[test]
fn fields_come_from_the_pod() {
    let out = compiled(&[namespace("shop", AMBIENT), pod("shop", "web-1", "10.0.0.1", "app: web")].concat());
    let w = workload(&out, "web-1");
    assert_eq!(out.shared.iter().filter(|r| r.name == "uid-web-1").count(), 1, "resource name is the uid");
    assert_eq!((w.uid.as_str(), w.namespace.as_str()), ("uid-web-1", "shop"));
    assert_eq!((w.service_account.as_str(), w.node.as_str()), ("sa-web-1", "node-1"));
    assert_eq!(w.addresses, [vec![10, 0, 0, 1]]);
}

#[test]
fn namespace_label_enrolls_and_pod_label_opts_out() {
    let yaml = [
        namespace("shop", AMBIENT),
        pod("shop", "in", "10.0.0.1", ""),
        pod("shop", "out", "10.0.0.2", "istio.io/dataplane-mode: none"),
    ]
    .concat();
    let out = compiled(&yaml);
    assert!(workload(&out, "in").captured);
    assert!(!workload(&out, "out").captured);
}

#[test]
fn pod_label_enrolls_in_a_plain_namespace() {
    let yaml =
        [namespace("plain", "team: x"), pod("plain", "in", "10.0.0.1", AMBIENT), pod("plain", "out", "10.0.0.2", "")]
            .concat();
    let out = compiled(&yaml);
    assert!(workload(&out, "in").captured);
    assert!(!workload(&out, "out").captured);
}

#[test]
fn unknown_namespace_is_not_captured() {
    let out = compiled(&[pod("ghost", "a", "10.0.0.1", ""), pod("ghost", "b", "10.0.0.2", AMBIENT)].concat());
    assert!(!workload(&out, "a").captured);
    assert!(workload(&out, "b").captured, "the pod's own label still enrolls it");
}

#[test]
fn host_network_unaddressed_and_finished_pods_are_not_workloads() {
    let special = |name: &str, spec: &str, status: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  nodeName: node-1\n{spec}\
             status:\n{status}---\n"
        )
    };
    let yaml = [
        namespace("shop", AMBIENT),
        special("host", "  hostNetwork: true\n", "  phase: Running\n  podIP: 192.168.0.5\n"),
        special("pending", "", "  phase: Pending\n"),
        special("done", "", "  phase: Succeeded\n  podIP: 10.0.0.9\n"),
        special("starting", "", "  phase: Pending\n  podIP: 10.0.0.8\n"),
    ]
    .concat();
    let out = compiled(&yaml);
    let names: Vec<&str> = workloads(&out).map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["starting"]);
    // No uid in the object: `<namespace>/<name>` stands in.
    assert_eq!(workload(&out, "starting").uid, "shop/starting");
}

#[test]
fn dual_stack_addresses_primary_first() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: shop}\nspec: {nodeName: n}\n\
                status:\n  phase: Running\n  podIP: fd00::7\n  podIPs: [{ip: 10.0.0.7}, {ip: 'fd00::7'}]\n";
    let out = compiled(yaml);
    let addresses: Vec<_> = workload(&out, "d").addresses.iter().map(|a| ip(a)).collect();
    assert_eq!(addresses, ["fd00::7".parse::<std::net::IpAddr>().unwrap(), "10.0.0.7".parse().unwrap()]);
    assert_eq!(workload(&out, "d").addresses[1].len(), 4);
}

#[test]
fn canonical_name_and_revision_prefer_istio_labels() {
    let all = labels(&[
        ("service.istio.io/canonical-name", "canon"),
        ("app.kubernetes.io/name", "k8s-name"),
        ("app", "app"),
        ("service.istio.io/canonical-revision", "r1"),
        ("app.kubernetes.io/version", "v-k8s"),
        ("version", "v1"),
    ]);
    assert_eq!((canonical_name(&all, "p"), canonical_revision(&all)), ("canon".into(), "r1".into()));
    let k8s = labels(&[("app.kubernetes.io/name", "k8s-name"), ("app", "app"), ("app.kubernetes.io/version", "2")]);
    assert_eq!((canonical_name(&k8s, "p"), canonical_revision(&k8s)), ("k8s-name".into(), "2".into()));
    let app = labels(&[("app", "reviews"), ("version", "v3")]);
    assert_eq!((canonical_name(&app, "p"), canonical_revision(&app)), ("reviews".into(), "v3".into()));
    let none = labels(&[]);
    assert_eq!(
        (canonical_name(&none, "reviews-v2-7c8d9f6b5b-x2zkq"), canonical_revision(&none)),
        ("reviews-v2".into(), "latest".into())
    );
}

#[test]
fn workload_name_heuristic() {
    let none = labels(&[]);
    // Deployment pods: -<pod-template-hash>-<5 random>.
    assert_eq!(workload_name("productpage-v1-545db77b95-2ps7r", &none), "productpage-v1");
    let hashed = labels(&[("pod-template-hash", "abcde1")]);
    assert_eq!(workload_name("web-abcde1-x2zkq", &hashed), "web", "the label names the hash");
    // StatefulSet, DaemonSet / Job.
    assert_eq!(workload_name("db-0", &none), "db");
    assert_eq!(workload_name("kafka-broker-12", &none), "kafka-broker");
    assert_eq!(workload_name("node-agent-x2zkq", &none), "node-agent");
    // Names that only look generated keep their form.
    assert_eq!(workload_name("web-frontend", &none), "web-frontend");
    assert_eq!(workload_name("api-server-blue", &none), "api-server-blue");
    assert_eq!(workload_name("solo", &none), "solo");
    assert_eq!(workload_name("-7", &none), "-7");
}

#[test]
fn namespace_waypoint_binds_workloads_only_when_it_admits_workload_traffic() {
    let for_services =
        [namespace("shop", "istio.io/use-waypoint: wp"), gateway("shop", "wp", None), pod("shop", "a", "10.0.0.1", "")]
            .concat();
    assert_eq!(workload(&compiled(&for_services), "a").waypoint, "", "waypoint-for defaults to service");
    for kind in ["workload", "all"] {
        let yaml = [
            namespace("shop", "istio.io/use-waypoint: wp"),
            gateway("shop", "wp", Some(kind)),
            pod("shop", "a", "10.0.0.1", ""),
            pod("shop", "b", "10.0.0.2", "istio.io/use-waypoint: none"),
        ]
        .concat();
        let out = compiled(&yaml);
        assert_eq!(workload(&out, "a").waypoint, "shop/wp", "waypoint-for {kind}");
        assert_eq!(workload(&out, "b").waypoint, "", "`none` opts the pod out");
    }
}

#[test]
fn pod_label_wins_and_can_name_another_namespace() {
    let yaml = [
        namespace("shop", "istio.io/use-waypoint: wp"),
        namespace("infra", ""),
        gateway("shop", "wp", Some("all")),
        gateway("infra", "shared", Some("workload")),
        pod("shop", "own", "10.0.0.1", "istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: infra"),
        pod("shop", "missing", "10.0.0.2", "istio.io/use-waypoint: nope"),
        pod("shop", "ns", "10.0.0.3", ""),
    ]
    .concat();
    let out = compiled(&yaml);
    assert_eq!(workload(&out, "own").waypoint, "infra/shared");
    assert_eq!(workload(&out, "missing").waypoint, "", "a label naming no waypoint does not fall back");
    assert_eq!(workload(&out, "ns").waypoint, "shop/wp");
}

#[test]
fn waypoint_pods_do_not_use_a_waypoint() {
    let yaml = [
        namespace("shop", "istio.io/use-waypoint: wp"),
        gateway("shop", "wp", Some("all")),
        pod("shop", "wp-5d8f7c9b6d-x2zkq", "10.0.0.1", "gateway.networking.k8s.io/gateway-name: wp"),
    ]
    .concat();
    assert_eq!(workload(&compiled(&yaml), "wp-5d8f7c9b6d-x2zkq").waypoint, "");
}
