//! Waypoint bindings: which waypoint a workload's or a service's traffic goes through.
//!
//! Istio's rules (`waypoints.go`, `fetchWaypointForTarget`; user docs:
//! <https://istio.io/latest/docs/ambient/usage/waypoint/>):
//! - the object's own `istio.io/use-waypoint` label wins; `none` opts it out, and a label
//!   naming a waypoint that does not exist leaves it without one (no fallback to the
//!   namespace's label, exactly as istiod does);
//! - otherwise its namespace's `istio.io/use-waypoint` label;
//! - `istio.io/use-waypoint-namespace`, next to either label, names the waypoint's namespace
//!   (default: the object's own);
//! - the Gateway must be a waypoint (`gatewayClassName: istio-waypoint`) whose
//!   `istio.io/waypoint-for` label (default `service`) admits the kind of traffic: a Service or
//!   ServiceEntry binds only to `service`/`all` waypoints, a pod only to `workload`/`all` ones;
//! - a waypoint's own pods and Service never go through a waypoint.
//!
//! Not checked: the listener's `allowedRoutes` for cross-namespace use (the config model does
//! not keep it); a binding across namespaces is accepted as labelled.

use ambit_common::config::model::{Gateway, Labels, ObjectMeta};

use super::index::Index;

const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
const WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Set by the Gateway controller on a waypoint's pods.
const GATEWAY_NAME: &str = "gateway.networking.k8s.io/gateway-name";
/// Set by istiod on the Deployment and Service it creates for a waypoint.
const MANAGED: &str = "gateway.istio.io/managed";
const MANAGED_BY_MESH: &str = "istio.io-mesh-controller";

/// The kind of traffic asking for a waypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Traffic {
    /// Addressed to a Service or ServiceEntry.
    Service,
    /// Addressed to a pod directly.
    Workload,
}

enum UseWaypoint<'l> {
    Unset,
    OptOut,
    Named { namespace: &'l str, name: &'l str },
}

fn use_waypoint<'l>(labels: &'l Labels, default_namespace: &'l str) -> UseWaypoint<'l> {
    match labels.get(USE_WAYPOINT).map(String::as_str) {
        None => UseWaypoint::Unset,
        Some("none") => UseWaypoint::OptOut,
        Some(name) => {
            let namespace = labels.get(USE_WAYPOINT_NAMESPACE).map_or(default_namespace, String::as_str);
            UseWaypoint::Named { namespace, name }
        }
    }
}

/// `"<namespace>/<gateway name>"`, or empty when the object's traffic bypasses waypoints.
pub(super) fn binding(index: &Index<'_>, meta: &ObjectMeta, traffic: Traffic) -> String {
    if is_waypoint_itself(index, meta) {
        return String::new();
    }
    let (namespace, name) = match use_waypoint(&meta.labels, &meta.namespace) {
        UseWaypoint::OptOut => return String::new(),
        UseWaypoint::Named { namespace, name } => (namespace, name),
        UseWaypoint::Unset => {
            let labels = index.namespace_labels(&meta.namespace);
            match labels.map(|l| use_waypoint(l, &meta.namespace)) {
                Some(UseWaypoint::Named { namespace, name }) => (namespace, name),
                _ => return String::new(),
            }
        }
    };
    match index.waypoint(namespace, name) {
        Some(gateway) if admits(gateway, traffic) => format!("{namespace}/{name}"),
        _ => String::new(),
    }
}

fn admits(gateway: &Gateway, traffic: Traffic) -> bool {
    let admitted = gateway.meta.labels.get(WAYPOINT_FOR).map_or("service", String::as_str);
    match traffic {
        Traffic::Service => matches!(admitted, "service" | "all"),
        Traffic::Workload => matches!(admitted, "workload" | "all"),
    }
}

fn is_waypoint_itself(index: &Index<'_>, meta: &ObjectMeta) -> bool {
    if meta.labels.get(MANAGED).is_some_and(|v| v == MANAGED_BY_MESH) {
        return true;
    }
    meta.labels.get(GATEWAY_NAME).is_some_and(|gateway| index.waypoint(&meta.namespace, gateway).is_some())
}
