//! A service port's ready endpoints, optionally only those of a subset (every subset label on
//! the endpoint's workload): from the service's EndpointSlices, or from the pods its selector
//! picks when it has no EndpointSlice (a local directory of YAML usually has none), or from a
//! ServiceEntry's `endpoints` / `workloadSelector`.

use std::{collections::BTreeMap, net::IpAddr};

use ambit_common::{
    api::{
        serde_bytes::from_ip,
        v1::{EndpointTransport, LbEndpoint},
    },
    config::model::{Labels, Pod, PodPhase, Service, ServiceEntry, TargetPort},
    enrollment,
};

use super::index::{Index, PortView, ServiceView, Source};

/// Ordered by address, then port.
pub(super) fn ready(
    index: &Index<'_>,
    service: &ServiceView<'_>,
    port: &PortView<'_>,
    subset: Option<&Labels>,
) -> Vec<LbEndpoint> {
    let mut found = Found { index, subset, endpoints: BTreeMap::new() };
    match service.source {
        Source::Kubernetes(svc) if index.slices(service.namespace, service.name).is_empty() => {
            found.collect_pods(svc, port);
        }
        Source::Kubernetes(_) => found.collect_slices(service, port),
        Source::Entry(entry) => found.collect_entry(entry, port),
    }
    found.endpoints.into_values().collect()
}

struct Found<'i, 'a> {
    index: &'i Index<'a>,
    subset: Option<&'i Labels>,
    endpoints: BTreeMap<(Vec<u8>, u32), LbEndpoint>,
}

impl<'a> Found<'_, 'a> {
    fn in_subset(&self, labels: &Labels) -> bool {
        self.subset.is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }

    fn collect_slices(&mut self, service: &ServiceView<'_>, port: &PortView<'_>) {
        let namespace = service.namespace;
        for slice in self.index.slices(namespace, service.name) {
            // EndpointSlice ports carry the service port's name ("" when it has none).
            let target = slice.ports.iter().find(|p| p.name.as_deref().unwrap_or("") == port.name.unwrap_or(""));
            let Some(target) = target.and_then(|p| p.port) else { continue };
            for endpoint in slice.endpoints.iter().filter(|e| e.ready) {
                let Some(address) = endpoint.addresses.first() else { continue };
                let pod = endpoint
                    .target
                    .as_ref()
                    .filter(|t| t.kind == "Pod")
                    .and_then(|t| self.index.pod(t.namespace.as_deref().unwrap_or(namespace), &t.name));
                // A subset needs the workload's labels: an endpoint without a known pod has none.
                if self.subset.is_some() && !pod.is_some_and(|p| self.in_subset(&p.meta.labels)) {
                    continue;
                }
                self.add(pod, *address, target, endpoint.node_name.as_deref());
            }
        }
    }

    fn collect_pods(&mut self, service: &Service, port: &PortView<'_>) {
        let Some(selector) = &service.selector else { return };
        let Some(service_port) = service.ports.iter().find(|p| p.port == port.port) else { return };
        let candidates: Vec<&'a Pod> = self
            .index
            .live_pods_with(Some(&service.meta.namespace), selector)
            .into_iter()
            .filter(|p| p.phase == PodPhase::Running && self.in_subset(&p.meta.labels))
            .collect();
        for pod in candidates {
            let target = match &service_port.target_port {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => pod
                    .containers
                    .iter()
                    .flat_map(|c| &c.ports)
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.port),
            };
            if let (Some(target), Some(ip)) = (target, pod.ip) {
                self.add(Some(pod), ip, target, None);
            }
        }
    }

    fn collect_entry(&mut self, entry: &ServiceEntry, port: &PortView<'_>) {
        let Some(entry_port) = entry.ports.iter().find(|p| p.number == port.port) else { return };
        let default_target = entry_port.target_port.unwrap_or(entry_port.number);
        if let Some(selector) = &entry.workload_selector {
            let pods: Vec<&'a Pod> = self
                .index
                .live_pods_with(Some(&entry.meta.namespace), &selector.match_labels)
                .into_iter()
                .filter(|p| p.phase == PodPhase::Running && self.in_subset(&p.meta.labels))
                .collect();
            for pod in pods {
                if let Some(ip) = pod.ip {
                    self.add(Some(pod), ip, default_target, None);
                }
            }
            return;
        }
        // Inline endpoints: IP addresses only (DNS names are not resolved by Ambit).
        for workload in &entry.endpoints {
            let Ok(ip) = workload.address.parse::<IpAddr>() else { continue };
            if !self.in_subset(&workload.labels) {
                continue;
            }
            let target = workload.ports.get(&entry_port.name).copied().unwrap_or(default_target);
            self.add(None, ip, target, None);
        }
    }

    fn add(&mut self, pod: Option<&Pod>, address: IpAddr, port: u16, node: Option<&str>) {
        let captured = pod.is_some_and(|p| self.captured(p));
        let endpoint = LbEndpoint {
            workload_uid: pod.and_then(|p| p.uid.clone()).unwrap_or_default(),
            address: from_ip(address),
            port: u32::from(port),
            node: node.or_else(|| pod.and_then(|p| p.node_name.as_deref())).unwrap_or_default().to_string(),
            identity: match pod {
                Some(p) if captured => self.index.identity(&p.meta.namespace, &p.service_account),
                _ => String::new(),
            },
            transport: if captured { EndpointTransport::Hbone } else { EndpointTransport::Plaintext }.into(),
        };
        self.endpoints.entry((endpoint.address.clone(), endpoint.port)).or_insert(endpoint);
    }

    /// In the mesh (Istio ambient's enrollment labels), so it speaks HBONE through its node proxy.
    fn captured(&self, pod: &Pod) -> bool {
        let namespace = self.index.namespace_labels(&pod.meta.namespace);
        !pod.host_network && enrollment::decide(namespace, &pod.meta.labels).is_enrolled()
    }
}
