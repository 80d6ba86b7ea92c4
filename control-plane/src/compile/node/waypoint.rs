//! Waypoints as node proxies see them: the bindings of workloads and services (the rules are in
//! [`crate::compile::binding`]), and one `Waypoint` resource per waypoint Gateway listing its
//! instances, the pods a node proxy tunnels to.
//!
//! A waypoint's instances are the workload pods of its namespace labelled
//! `gateway.networking.k8s.io/gateway-name: <name>` (as the Gateway controller labels them) that
//! are `Running`: the proto promises *ready* instances, and a `Pending` pod with an address has
//! not started its containers, so a tunnel to it would only be refused. (The model keeps no
//! readiness conditions; `Running` is the closest it knows.)

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind},
    config::model::{Gateway, ObjectMeta, PodPhase},
};

use super::{
    index::{Index, MeshPod},
    resource,
};
pub(crate) use crate::compile::binding::Traffic;
use crate::compile::binding::{GATEWAY_NAME, admits, is_waypoint_itself, requested};

/// `"<namespace>/<gateway name>"`, or empty when the object's traffic bypasses waypoints.
pub(super) fn binding(index: &Index<'_>, meta: &ObjectMeta, traffic: Traffic) -> String {
    if is_part_of_waypoint(index, meta) {
        return String::new();
    }
    let Some((namespace, name)) = requested(&meta.labels, &meta.namespace, index.namespace_labels(&meta.namespace))
    else {
        return String::new();
    };
    match index.waypoint(namespace, name) {
        Some(gateway) if admits(gateway, traffic) => format!("{namespace}/{name}"),
        _ => String::new(),
    }
}

/// Whether an object (pod or Service) is part of a waypoint. Such a pod is never captured, or
/// the node proxy would send the waypoint's own traffic back to it; such a service never goes
/// through a waypoint.
pub(super) fn is_part_of_waypoint(index: &Index<'_>, meta: &ObjectMeta) -> bool {
    is_waypoint_itself(&meta.labels, &meta.namespace, |ns, name| index.waypoint(ns, name).is_some())
}

/// Every waypoint with its instances, by resource name (`<namespace>/<name>`).
pub(super) struct Waypoints<'i, 'a> {
    by_name: BTreeMap<String, (&'a Gateway, Vec<&'i MeshPod<'a>>)>,
}

impl<'i, 'a> Waypoints<'i, 'a> {
    pub(super) fn new(index: &'i Index<'a>) -> Self {
        let by_name = index
            .snapshot
            .gateways()
            .filter(|g| g.is_waypoint())
            .map(|g| (format!("{}/{}", g.meta.namespace, g.meta.name), (g, instances(index, g))))
            .collect();
        Self { by_name }
    }

    /// Every waypoint: resource name, Gateway, instances (sorted by uid).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &'a Gateway, &[&'i MeshPod<'a>])> {
        self.by_name.iter().map(|(name, (gateway, pods))| (name.as_str(), *gateway, pods.as_slice()))
    }

    /// One `Waypoint` resource per waypoint Gateway, in name order.
    pub(super) fn compile(&self) -> Vec<Resource> {
        self.iter()
            .map(|(name, gateway, pods)| {
                let waypoint = api::Waypoint {
                    namespace: gateway.meta.namespace.clone(),
                    name: gateway.meta.name.clone(),
                    workload_uids: pods.iter().map(|p| p.uid.clone()).collect(),
                };
                resource(name.to_owned(), Kind::Waypoint(waypoint))
            })
            .collect()
    }
}

fn instances<'i, 'a>(index: &'i Index<'a>, gateway: &'a Gateway) -> Vec<&'i MeshPod<'a>> {
    let mut pods: Vec<_> = index
        .pods_in(&gateway.meta.namespace)
        .filter(|p| p.pod.meta.labels.get(GATEWAY_NAME) == Some(&gateway.meta.name))
        .filter(|p| p.pod.phase == PodPhase::Running)
        .collect();
    pods.sort_by(|a, b| a.uid.cmp(&b.uid));
    pods
}
