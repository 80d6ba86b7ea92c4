//! Which services a waypoint serves, with Istio ambient's labels
//! (<https://istio.io/latest/docs/ambient/usage/waypoint/>):
//!
//! - `istio.io/use-waypoint: <gateway name>` on a Service (or ServiceEntry) binds it; on its
//!   namespace, every service in it that has no label of its own. `none` opts out.
//! - `istio.io/use-waypoint-namespace: <namespace>` beside it names the Gateway's namespace
//!   (cross-namespace waypoints); without it the Gateway is in the labelled object's namespace.
//!   Both labels are read from the same object: a service's own label never combines with its
//!   namespace's `use-waypoint-namespace`.
//! - The Gateway's `istio.io/waypoint-for` label says what traffic it takes: `service` (the
//!   default when unset) and `all` take service traffic; `workload` and `none` take none, so no
//!   service binds to them.
//!
//! - A waypoint's own Service (`gateway.istio.io/managed: istio.io-mesh-controller`, or a
//!   `gateway.networking.k8s.io/gateway-name` label naming a waypoint) never binds.
//!
//! Pods labelled `istio.io/use-waypoint` send *workload-addressed* traffic to the waypoint; that
//! traffic has no service and so no route table here. These are the rules the node proxies'
//! compilation (`compile/node/waypoint.rs`) applies to tell them where to send service traffic.

use std::collections::BTreeMap;

use ambit_common::config::model::{Gateway, Labels};

use super::index::{Index, ServiceView};

const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Set by istiod on the Service it creates for a waypoint.
const MANAGED: &str = "gateway.istio.io/managed";
const MANAGED_BY_MESH: &str = "istio.io-mesh-controller";
/// Set by the Gateway controller on what it creates for a Gateway.
const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";

/// The services bound to each waypoint, by the waypoint's namespace and name.
pub(super) struct Bindings<'i, 'a> {
    by_waypoint: BTreeMap<&'a str, BTreeMap<&'a str, Vec<&'i ServiceView<'a>>>>,
}

impl<'i, 'a> Bindings<'i, 'a> {
    pub(super) fn new(index: &'i Index<'a>) -> Self {
        let mut by_waypoint: BTreeMap<_, BTreeMap<_, Vec<_>>> = BTreeMap::new();
        for service in index.services.values().filter(|s| !is_a_waypoint(s, index)) {
            if let Some((namespace, name)) = waypoint_of(service, index) {
                by_waypoint.entry(namespace).or_default().entry(name).or_default().push(service);
            }
        }
        Self { by_waypoint }
    }

    /// The services bound to `gateway`, ordered by hostname; none when it takes no service
    /// traffic.
    pub(super) fn services(&self, gateway: &Gateway) -> &[&'i ServiceView<'a>] {
        let takes_services = match gateway.meta.labels.get(WAYPOINT_FOR).map(String::as_str) {
            None | Some("service" | "all") => true,
            Some(_) => false,
        };
        let bound =
            self.by_waypoint.get(gateway.meta.namespace.as_str()).and_then(|n| n.get(gateway.meta.name.as_str()));
        match bound {
            Some(services) if takes_services => services,
            _ => &[],
        }
    }
}

fn is_a_waypoint(service: &ServiceView<'_>, index: &Index<'_>) -> bool {
    service.labels.get(MANAGED).is_some_and(|v| v == MANAGED_BY_MESH)
        || service.labels.get(GATEWAY_NAME).is_some_and(|name| index.is_waypoint(service.namespace, name))
}

/// The waypoint (namespace, Gateway name) a service's traffic goes through, if any.
fn waypoint_of<'a>(service: &ServiceView<'a>, index: &Index<'a>) -> Option<(&'a str, &'a str)> {
    label_pair(service.labels, service.namespace)
        .or_else(|| index.namespace_labels(service.namespace).and_then(|l| label_pair(l, service.namespace)))
        .flatten()
}

/// `None`: the object has no `use-waypoint` label; `Some(None)`: it opts out with `none`.
fn label_pair<'a>(labels: &'a Labels, own_namespace: &'a str) -> Option<Option<(&'a str, &'a str)>> {
    let name = labels.get(USE_WAYPOINT)?;
    if name == "none" {
        return Some(None);
    }
    let namespace = labels.get(USE_WAYPOINT_NAMESPACE).map_or(own_namespace, String::as_str);
    Some(Some((namespace, name.as_str())))
}
