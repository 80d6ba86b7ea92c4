//! Waypoint resources (`route.proto`): for each waypoint (a Gateway of class `istio-waypoint`), a
//! RouteTable per service bound to it, a Cluster per (service, port, subset) its routes and
//! mirrors send to, and an HttpAuthorization per AuthorizationPolicy that targets it.
//!
//! One step per module:
//! - [`bind`]: which services a waypoint serves (`istio.io/use-waypoint` labels);
//! - [`routes`]: which VirtualService routes a service, per port; default routes; TCP routes;
//! - [`http`], [`matches`], [`actions`]: one HTTP route, translated as Istio translates it for
//!   Envoy, with Istio's defaults (retry policy, no timeout) written out;
//! - [`clusters`], [`policy`], [`endpoints`]: the clusters those routes name, with the
//!   DestinationRule policy after Istio's override rules and the ready endpoints of each subset;
//! - [`authz`]: the AuthorizationPolicies attached to the waypoint or its services
//!   (`targetRefs`), as `HttpAuthorization`s;
//! - [`workloads`]: the pods bound to the waypoint (for `workload`/`all` waypoints), read off the
//!   node proxies' `Workload`s so both sides agree, as `BoundWorkload`s.
//!
//! Lookups are relative to the waypoint's namespace, as Istio's are to the proxy's: the
//! VirtualServices and DestinationRules it uses are those visible there (`exportTo`).
//! Output is deterministic: route tables by hostname, then clusters by name, then
//! authorizations by name, then bound workloads by uid.

mod actions;
mod authz;
mod bind;
mod clusters;
mod endpoints;
mod http;
mod index;
mod matches;
mod policy;
mod routes;
#[cfg(test)]
mod tests;
mod workloads;

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{Resource, resource::Kind},
    config::{Duration, Snapshot, model::Percent},
};

use self::{index::Index, routes::ClusterRefs, workloads::BoundWorkloads};
use super::{MeshConfig, WaypointKey};

/// `node_shared`: the node proxies' shared resources, whose `Workload`s say which pods are bound
/// to which waypoint.
pub(super) fn compile(
    snapshot: &Snapshot,
    mesh: &MeshConfig,
    node_shared: &[Resource],
) -> BTreeMap<WaypointKey, Vec<Resource>> {
    let index = Index::new(snapshot, mesh);
    let bindings = bind::Bindings::new(&index);
    let bound = BoundWorkloads::new(node_shared);
    snapshot
        .gateways()
        .filter(|g| g.is_waypoint())
        .map(|gateway| {
            let ctx = Ctx { index: &index, waypoint_namespace: &gateway.meta.namespace };
            let mut refs = ClusterRefs::new();
            let mut resources = Vec::new();
            for service in bindings.services(gateway) {
                let table = routes::route_table(&ctx, service, &mut refs);
                resources.push(Resource { name: table.hostname.clone(), kind: Some(Kind::RouteTable(table)) });
            }
            for key in &refs {
                resources.push(Resource { name: key.name(), kind: Some(Kind::Cluster(clusters::cluster(&ctx, key))) });
            }
            resources.extend(authz::compile(snapshot, gateway, bindings.services(gateway)));
            resources.extend(bound.resources(&gateway.meta.namespace, &gateway.meta.name, mesh));
            let key = WaypointKey { namespace: gateway.meta.namespace.clone(), name: gateway.meta.name.clone() };
            (key, resources)
        })
        .collect()
}

/// What compiling for one waypoint needs.
struct Ctx<'a> {
    index: &'a Index<'a>,
    waypoint_namespace: &'a str,
}

/// Whole milliseconds, rounded up: a short non-zero duration never reads as 0 ("none").
fn ms(duration: Duration) -> u64 {
    let d = duration.as_std();
    let whole = d.as_millis() + u128::from(!d.as_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole).unwrap_or(u64::MAX)
}

/// A percentage as parts per million, Envoy's `FractionalPercent` with denominator MILLION as
/// Istio builds it (0.1 % → 1000); rounded where Istio truncates, so that 0.29 % is 2900 rather
/// than the 2899 floating point would give.
fn per_million(percent: Percent) -> u32 {
    // In range by construction: Percent is 0–100.
    (percent.value() * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32
}
