//! Pods → `Workload` resources (resource name: the pod's uid; see [`super::index`] for pods
//! without one).

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::model::Labels,
    enrollment,
};

use super::{
    index::{self, Index, MeshPod},
    ip_bytes, resource,
    waypoint::{self, Traffic},
    waypoint_allow::ImplicitAllow,
};

pub(super) fn compile(index: &Index<'_>, implicit: &ImplicitAllow) -> Vec<Resource> {
    index.pods().iter().map(|p| resource(p.uid.clone(), Kind::Workload(workload(index, implicit, p)))).collect()
}

fn workload(index: &Index<'_>, implicit: &ImplicitAllow, mesh_pod: &MeshPod<'_>) -> api::Workload {
    let pod = mesh_pod.pod;
    let (namespace, labels) = (&pod.meta.namespace, &pod.meta.labels);
    let mtls = index.peer_authentications.effective(namespace, labels);
    let waypoint = waypoint::binding(index, &pod.meta, Traffic::Workload);
    let authorization_policies = policies(index, implicit, mesh_pod, &waypoint);
    api::Workload {
        uid: mesh_pod.uid.clone(),
        name: pod.meta.name.clone(),
        namespace: namespace.clone(),
        service_account: pod.service_account.clone(),
        node: pod.node_name.clone().unwrap_or_default(),
        addresses: index::addresses(pod).into_iter().map(ip_bytes).collect(),
        // In a namespace the snapshot does not hold, only the pod's own
        // `istio.io/dataplane-mode=ambient` label enrolls it. A waypoint's own pods are never
        // captured, whatever their labels (Istio labels them `istio.io/dataplane-mode: none`).
        captured: !waypoint::is_part_of_waypoint(index, &pod.meta)
            && enrollment::decide(index.namespace_labels(namespace), labels).is_enrolled(),
        waypoint,
        canonical_name: canonical_name(labels, &pod.meta.name),
        canonical_revision: canonical_revision(labels),
        authorization_policies,
        mtls: mtls.mode.into(),
        port_mtls: mtls.ports.into_iter().map(|(port, mode)| (u32::from(port), mode.into())).collect(),
    }
}

/// The policies that apply to the pod, plus the implicit "allow from the waypoint" ones when an
/// ALLOW policy would otherwise refuse its waypoints (see [`super::waypoint_allow`]).
fn policies(index: &Index<'_>, implicit: &ImplicitAllow, mesh_pod: &MeshPod<'_>, waypoint: &str) -> Vec<String> {
    let meta = &mesh_pod.pod.meta;
    let applicable = index.policies.for_workload(&meta.namespace, &meta.labels);
    let mut names = applicable.names;
    if applicable.has_allow {
        names.extend(implicit.for_workload(&mesh_pod.uid, waypoint));
        names.sort();
        names.dedup();
    }
    names
}

/// Istio's canonical service labels, in Istio's order of preference
/// (<https://istio.io/latest/docs/ops/configuration/telemetry/canonical-service/>).
const NAME_LABELS: [&str; 3] = ["service.istio.io/canonical-name", "app.kubernetes.io/name", "app"];
const REVISION_LABELS: [&str; 3] = ["service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"];

fn first_label(labels: &Labels, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| labels.get(*k).filter(|v| !v.is_empty()).cloned())
}

pub(super) fn canonical_name(labels: &Labels, pod_name: &str) -> String {
    first_label(labels, &NAME_LABELS).unwrap_or_else(|| workload_name(pod_name, labels).to_string())
}

pub(super) fn canonical_revision(labels: &Labels) -> String {
    first_label(labels, &REVISION_LABELS).unwrap_or_else(|| "latest".to_string())
}

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3): the random parts of
/// generated pod names use only these characters, which words almost never do.
const GENERATED: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated(part: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    lengths.contains(&part.len()) && part.bytes().all(|b| GENERATED.contains(&b))
}

/// The name of the pod's owning workload, guessed from the pod name: Istio reads the owner
/// references, which the config model does not keep. The heuristic strips
/// - `-<pod-template-hash>-<5 random>` (a Deployment's pods: the hash is the pod's
///   `pod-template-hash` label when present, else 6–10 generated characters);
/// - `-<ordinal>` (a StatefulSet's pods);
/// - `-<5 random>` (DaemonSet and Job pods);
///
/// and otherwise keeps the pod name.
pub(super) fn workload_name<'n>(pod_name: &'n str, labels: &Labels) -> &'n str {
    let Some((rest, suffix)) =
        pod_name.rsplit_once('-').filter(|(rest, suffix)| !rest.is_empty() && !suffix.is_empty())
    else {
        return pod_name;
    };
    if let Some((base, hash)) = rest.rsplit_once('-').filter(|(base, _)| !base.is_empty()) {
        let template_hash = match labels.get("pod-template-hash") {
            Some(label) => label == hash,
            None => generated(hash, 6..=10),
        };
        if template_hash && generated(suffix, 5..=5) {
            return base;
        }
    }
    if suffix.bytes().all(|b| b.is_ascii_digit()) || generated(suffix, 5..=5) {
        return rest;
    }
    pod_name
}
