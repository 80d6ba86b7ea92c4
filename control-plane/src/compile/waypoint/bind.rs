//! Which services each waypoint serves; the rules are in [`crate::compile::binding`], shared
//! with the node proxies' compilation. Pods labelled `istio.io/use-waypoint` send
//! *workload-addressed* traffic to the waypoint; that traffic has no service and so no route
//! table here (see [`super::workloads`]).

use std::collections::BTreeMap;

use ambit_common::config::model::Gateway;

use super::index::{Index, ServiceView};
use crate::compile::binding::{Traffic, admits, is_waypoint_itself, requested};

/// The services bound to each waypoint, by the waypoint's namespace and name.
pub(super) struct Bindings<'i, 'a> {
    by_waypoint: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'i ServiceView<'a>>>>,
}

impl<'i, 'a> Bindings<'i, 'a> {
    pub(super) fn new(index: &'i Index<'a>) -> Self {
        let mut by_waypoint: BTreeMap<_, BTreeMap<_, Vec<_>>> = BTreeMap::new();
        for service in index.services.values() {
            if is_waypoint_itself(service.labels, service.namespace, |ns, name| index.is_waypoint(ns, name)) {
                continue;
            }
            let namespace_labels = index.namespace_labels(service.namespace);
            if let Some((namespace, name)) = requested(service.labels, service.namespace, namespace_labels) {
                by_waypoint.entry(namespace).or_default().entry(name).or_default().push(service);
            }
        }
        Self { by_waypoint }
    }

    /// The services bound to `gateway`, ordered by hostname; none when it takes no service
    /// traffic.
    pub(super) fn services(&self, gateway: &Gateway) -> &[&'i ServiceView<'a>] {
        let bound =
            self.by_waypoint.get(gateway.meta.namespace.as_str()).and_then(|n| n.get(gateway.meta.name.as_str()));
        match bound {
            Some(services) if admits(gateway, Traffic::Service) => services,
            _ => &[],
        }
    }
}
