//! Istio's implicit "allow from the waypoint" policy. A node proxy sees traffic that went through
//! a waypoint as coming from the waypoint's identity, not the real client's; an ALLOW policy
//! written for the real clients would therefore refuse everything the waypoint forwards. istiod
//! solves this with an implicit ALLOW policy per waypoint, admitting its service accounts
//! (`istio_allow_waypoint_<namespace>_<name>`, feature `DEFAULT_ALLOW_FROM_WAYPOINT`, on by
//! default; <https://istio.io/latest/docs/ambient/usage/l4-policy/>), and Ambit does the same:
//!
//! - one `Authorization` resource per waypoint that has instances, in the waypoint's namespace:
//!   ALLOW from the principals `<trust domain>/ns/<namespace>/sa/<sa>` of its instances' service
//!   accounts (written without `spiffe://`, like every principal the compiler emits);
//! - a workload references it when it is bound to that waypoint — its own `waypoint`, or as an
//!   endpoint of a service bound to it — *and* at least one ALLOW policy applies to it. Without
//!   an ALLOW policy the workload admits the waypoint already, and adding an ALLOW would turn its
//!   default to deny. DENY policies still apply: they are evaluated first.
//!
//! Why the control plane and not the node proxy: this is how istiod ships it to ztunnel, the
//! policy is visible in `/config_dump` like any other, and the node proxy keeps a single rule
//! for authorization. The name has an `_`, which no Kubernetes object name can have, so it
//! never collides with a real AuthorizationPolicy.

use std::collections::{BTreeMap, BTreeSet};

use ambit_common::{
    api::v1::{self as api, Resource, resource::Kind, string_match},
    config::model::Gateway,
};

use super::{authorization, index::MeshPod, resource, waypoint::Waypoints};
use crate::compile::MeshConfig;

pub(super) struct ImplicitAllow {
    /// Policy resource name by waypoint name, for waypoints with instances.
    policy_names: BTreeMap<String, String>,
    policies: BTreeMap<String, Resource>,
    /// Waypoints a workload (by uid) is bound to as an endpoint of a bound service.
    via_services: BTreeMap<String, BTreeSet<String>>,
}

impl ImplicitAllow {
    /// `services`: the compiled `Service` resources (the endpoints node proxies see).
    pub(super) fn new(mesh: &MeshConfig, waypoints: &Waypoints<'_, '_>, services: &[Resource]) -> Self {
        let mut policy_names = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for (waypoint, gateway, instances) in waypoints.iter() {
            let Some(policy) = policy(mesh, gateway, instances) else { continue };
            let policy_name = format!("{}/{}", policy.namespace, policy.name);
            policies.insert(policy_name.clone(), resource(policy_name.clone(), Kind::Authorization(policy)));
            policy_names.insert(waypoint.to_owned(), policy_name);
        }
        Self { policy_names, policies, via_services: bound_via_services(services) }
    }

    /// The implicit policies (resource names) of a workload bound to `own_waypoint` (empty when
    /// none) that has at least one ALLOW policy. Call it only for such workloads.
    pub(super) fn for_workload(&self, uid: &str, own_waypoint: &str) -> Vec<String> {
        let via_services = self.via_services.get(uid).into_iter().flatten().map(String::as_str);
        let bound: BTreeSet<&str> = via_services.chain(Some(own_waypoint).filter(|w| !w.is_empty())).collect();
        bound.into_iter().filter_map(|waypoint| self.policy_names.get(waypoint).cloned()).collect()
    }

    /// The policies, by resource name.
    pub(super) fn into_resources(self) -> BTreeMap<String, Resource> {
        self.policies
    }
}

/// ALLOW from the identities of the waypoint's instances; `None` without instances (no identity
/// to admit, and a policy listing no principal would admit nothing anyway).
fn policy(mesh: &MeshConfig, gateway: &Gateway, instances: &[&MeshPod<'_>]) -> Option<api::Authorization> {
    let accounts: BTreeSet<&str> = instances.iter().map(|p| p.pod.service_account.as_str()).collect();
    if accounts.is_empty() {
        return None;
    }
    let (namespace, name) = (&gateway.meta.namespace, &gateway.meta.name);
    let principal = |sa: &str| {
        authorization::kind(string_match::Kind::Exact(format!("{}/ns/{namespace}/sa/{sa}", mesh.trust_domain)))
    };
    Some(api::Authorization {
        name: format!("istio_allow_waypoint_{namespace}_{name}"),
        namespace: namespace.clone(),
        action: api::AuthorizationAction::Allow.into(),
        rules: vec![api::AuthorizationRule {
            from: vec![api::Source { principals: accounts.into_iter().map(principal).collect(), ..Default::default() }],
            ..Default::default()
        }],
        has_l7: false,
    })
}

/// The waypoints each workload (by uid) is bound to as an endpoint of a service bound to one.
fn bound_via_services(services: &[Resource]) -> BTreeMap<String, BTreeSet<String>> {
    let mut bound: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let with_waypoint = services.iter().filter_map(|r| match &r.kind {
        Some(Kind::Service(s)) if !s.waypoint.is_empty() => Some(s),
        _ => None,
    });
    for service in with_waypoint {
        for endpoint in service.endpoints.iter().filter(|e| !e.workload_uid.is_empty()) {
            bound.entry(endpoint.workload_uid.clone()).or_default().insert(service.waypoint.clone());
        }
    }
    bound
}
