//! Waypoint bindings of node-proxy resources; the rules are in [`crate::compile::binding`].

use ambit_common::config::model::ObjectMeta;

use super::index::Index;
pub(crate) use crate::compile::binding::Traffic;
use crate::compile::binding::{admits, is_waypoint_itself, requested};

/// `"<namespace>/<gateway name>"`, or empty when the object's traffic bypasses waypoints.
pub(super) fn binding(index: &Index<'_>, meta: &ObjectMeta, traffic: Traffic) -> String {
    if is_waypoint_itself(&meta.labels, &meta.namespace, |ns, name| index.waypoint(ns, name).is_some()) {
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
