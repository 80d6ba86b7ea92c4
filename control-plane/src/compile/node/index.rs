//! Lookups built once per snapshot, so each resource compiles without rescanning it.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    net::IpAddr,
};

use ambit_common::config::{
    Snapshot,
    model::{EndpointSlice, Gateway, Labels, Pod, PodPhase},
};

use super::{MeshConfig, authorization::NodePolicies, mtls::PeerAuthentications};

/// A pod that becomes a `Workload`, with the uid it is published under.
pub(super) struct MeshPod<'a> {
    pub(super) pod: &'a Pod,
    pub(super) uid: String,
}

pub(super) struct Index<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) mesh: &'a MeshConfig,
    pub(super) peer_authentications: PeerAuthentications<'a>,
    pub(super) policies: NodePolicies<'a>,
    namespaces: BTreeMap<&'a str, &'a Labels>,
    waypoints: BTreeMap<(&'a str, &'a str), &'a Gateway>,
    /// EndpointSlices by the namespace and name of their Service.
    slices: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'a EndpointSlice>>>,
    pods: Vec<MeshPod<'a>>,
    by_name: BTreeMap<(&'a str, &'a str), usize>,
    by_uid: BTreeMap<&'a str, usize>,
    by_ip: BTreeMap<IpAddr, usize>,
}

impl<'a> Index<'a> {
    pub(super) fn new(snapshot: &'a Snapshot, mesh: &'a MeshConfig) -> Self {
        let mut index = Index {
            snapshot,
            mesh,
            peer_authentications: PeerAuthentications::new(snapshot, &mesh.root_namespace),
            policies: NodePolicies::new(snapshot, &mesh.root_namespace),
            namespaces: snapshot.namespaces().map(|n| (n.meta.name.as_str(), &n.meta.labels)).collect(),
            waypoints: snapshot
                .gateways()
                .filter(|g| g.is_waypoint())
                .map(|g| ((g.meta.namespace.as_str(), g.meta.name.as_str()), g))
                .collect(),
            slices: BTreeMap::new(),
            pods: Vec::new(),
            by_name: BTreeMap::new(),
            by_uid: BTreeMap::new(),
            by_ip: BTreeMap::new(),
        };
        for slice in snapshot.endpoint_slices() {
            if let Some(service) = &slice.service_name {
                index.slices.entry(&slice.meta.namespace).or_default().entry(service).or_default().push(slice);
            }
        }
        for pod in snapshot.pods().filter(|p| is_workload(p)) {
            index.add(pod);
        }
        index
    }

    fn add(&mut self, pod: &'a Pod) {
        let i = self.pods.len();
        self.by_name.insert((&pod.meta.namespace, &pod.meta.name), i);
        if let Some(uid) = &pod.uid {
            self.by_uid.insert(uid, i);
        }
        // Two live pods never share an IP; if a stale object says otherwise, the first pod (in
        // namespace/name order) keeps it, so the choice does not depend on arrival order.
        for ip in addresses(pod) {
            if let Entry::Vacant(e) = self.by_ip.entry(ip) {
                e.insert(i);
            }
        }
        self.pods.push(MeshPod { pod, uid: workload_uid(pod) });
    }

    /// The pods that become workloads, in namespace/name order.
    pub(super) fn pods(&self) -> &[MeshPod<'a>] {
        &self.pods
    }

    /// `None`: the namespace is unknown (no Namespace object).
    pub(super) fn namespace_labels(&self, namespace: &str) -> Option<&'a Labels> {
        self.namespaces.get(namespace).copied()
    }

    /// The waypoint Gateway (`gatewayClassName: istio-waypoint`) `namespace/name`.
    pub(super) fn waypoint(&self, namespace: &str, name: &str) -> Option<&'a Gateway> {
        self.waypoints.get(&(namespace, name)).copied()
    }

    /// The EndpointSlices of the Service `namespace/name`, in slice name order.
    pub(super) fn endpoint_slices(&self, namespace: &str, service: &str) -> &[&'a EndpointSlice] {
        self.slices.get(namespace).and_then(|by_service| by_service.get(service)).map_or(&[], Vec::as_slice)
    }

    /// The workload pods of one namespace, in name order.
    pub(super) fn pods_in<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s MeshPod<'a>> {
        self.by_name
            .range((namespace, "")..)
            .take_while(move |((ns, _), _)| *ns == namespace)
            .map(|(_, &i)| &self.pods[i])
    }

    pub(super) fn pod_by_name(&self, namespace: &str, name: &str) -> Option<&MeshPod<'a>> {
        self.by_name.get(&(namespace, name)).map(|&i| &self.pods[i])
    }

    pub(super) fn pod_by_uid(&self, uid: &str) -> Option<&MeshPod<'a>> {
        self.by_uid.get(uid).map(|&i| &self.pods[i])
    }

    pub(super) fn pod_by_ip(&self, ip: IpAddr) -> Option<&MeshPod<'a>> {
        self.by_ip.get(&ip).map(|&i| &self.pods[i])
    }
}

/// Istio's rule (`podWorkloadBuilder`): running or pending, networked, not on the host network.
fn is_workload(pod: &Pod) -> bool {
    pod.ip.is_some() && !pod.host_network && !matches!(pod.phase, PodPhase::Succeeded | PodPhase::Failed)
}

/// The pod's addresses, primary (`status.podIP`) first, without duplicates.
pub(super) fn addresses(pod: &Pod) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = pod.ip.into_iter().collect();
    for ip in &pod.ips {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

/// The pod's uid. Pods written by hand for the local source often have none; they get
/// `<namespace>/<name>`, which cannot collide with a real uid (a UUID never contains `/`).
fn workload_uid(pod: &Pod) -> String {
    match &pod.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!("{}/{}", pod.meta.namespace, pod.meta.name),
    }
}
