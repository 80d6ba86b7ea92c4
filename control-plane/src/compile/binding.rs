//! Waypoint bindings: which waypoint a workload's or a service's traffic goes through. One
//! module for both compilations, so node proxies (who send traffic to a waypoint) and waypoints
//! (who serve it) can never disagree.
//!
//! Istio's rules (`waypoints.go`, `fetchWaypointForTarget`; user docs:
//! <https://istio.io/latest/docs/ambient/usage/waypoint/>):
//! - the object's own `istio.io/use-waypoint` label wins; `none` opts it out, and a label
//!   naming a waypoint that does not exist leaves it without one (no fallback to the
//!   namespace's label, exactly as istiod does);
//! - otherwise its namespace's `istio.io/use-waypoint` label;
//! - `istio.io/use-waypoint-namespace`, next to either label, names the waypoint's namespace
//!   (default: the object's own); both labels are read from the same object;
//! - the Gateway must be a waypoint (`gatewayClassName: istio-waypoint`) whose
//!   `istio.io/waypoint-for` label (default `service`) admits the kind of traffic: a Service or
//!   ServiceEntry binds only to `service`/`all` waypoints, a pod only to `workload`/`all` ones;
//! - a waypoint's own pods and Service never go through a waypoint.
//!
//! Not checked: the listener's `allowedRoutes` for cross-namespace use (the config model does
//! not keep it); a binding across namespaces is accepted as labelled.

use ambit_common::config::model::{Gateway, Labels};

const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Set by the Gateway controller on a waypoint's pods and Service.
pub(crate) const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// Set by istiod on the Deployment and Service it creates for a waypoint.
const MANAGED: &str = "gateway.istio.io/managed";
const MANAGED_BY_MESH: &str = "istio.io-mesh-controller";

/// The kind of traffic asking for a waypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Traffic {
    /// Addressed to a Service or ServiceEntry.
    Service,
    /// Addressed to a pod directly.
    Workload,
}

/// The waypoint an object's labels (or, without its own label, its namespace's) ask for:
/// `(namespace, gateway name)`; `None` when unset or opted out.
pub(crate) fn requested<'a>(
    labels: &'a Labels,
    namespace: &'a str,
    namespace_labels: Option<&'a Labels>,
) -> Option<(&'a str, &'a str)> {
    match label_pair(labels, namespace) {
        Some(own) => own,
        None => namespace_labels.and_then(|l| label_pair(l, namespace)).flatten(),
    }
}

/// `None`: no `use-waypoint` label; `Some(None)`: opted out with `none`.
fn label_pair<'a>(labels: &'a Labels, own_namespace: &'a str) -> Option<Option<(&'a str, &'a str)>> {
    let name = labels.get(USE_WAYPOINT)?;
    if name == "none" {
        return Some(None);
    }
    let namespace = labels.get(USE_WAYPOINT_NAMESPACE).map_or(own_namespace, String::as_str);
    Some(Some((namespace, name.as_str())))
}

/// Whether `gateway` takes this kind of traffic (its `istio.io/waypoint-for` label).
pub(crate) fn admits(gateway: &Gateway, traffic: Traffic) -> bool {
    let admitted = gateway.meta.labels.get(WAYPOINT_FOR).map_or("service", String::as_str);
    match traffic {
        Traffic::Service => matches!(admitted, "service" | "all"),
        Traffic::Workload => matches!(admitted, "workload" | "all"),
    }
}

/// Whether an object (pod or Service) in `namespace` with `labels` is part of a waypoint itself;
/// `is_waypoint(namespace, name)` says whether a Gateway is a waypoint.
pub(crate) fn is_waypoint_itself(labels: &Labels, namespace: &str, is_waypoint: impl Fn(&str, &str) -> bool) -> bool {
    labels.get(MANAGED).is_some_and(|v| v == MANAGED_BY_MESH)
        || labels.get(GATEWAY_NAME).is_some_and(|gateway| is_waypoint(namespace, gateway))
}
