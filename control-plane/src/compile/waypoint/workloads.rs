//! The workloads bound to each waypoint (`BoundWorkload`s): the pods whose traffic node proxies
//! send to it when it is addressed to the pod itself (`istio.io/use-waypoint` on the pod or its
//! namespace, to a waypoint for `workload` or `all`).
//!
//! They are read off the node proxies' compiled `Workload`s, whose `waypoint` field holds the
//! binding as [`crate::compile::binding`] decides it: the waypoint serves exactly the pods node
//! proxies send to it (same uid, same addresses), by construction rather than by two
//! compilations agreeing.

use std::collections::BTreeMap;

use ambit_common::api::v1::{BoundWorkload, EndpointTransport, Resource, Workload, resource::Kind};

use super::super::MeshConfig;

/// Bound workloads by waypoint (`"<namespace>/<name>"`), each list in uid order.
pub(super) struct BoundWorkloads<'w> {
    by_waypoint: BTreeMap<&'w str, Vec<&'w Workload>>,
}

impl<'w> BoundWorkloads<'w> {
    /// `shared`: the node proxies' shared resources (their `Workload`s are read).
    pub(super) fn new(shared: &'w [Resource]) -> Self {
        let mut by_waypoint: BTreeMap<&str, Vec<&Workload>> = BTreeMap::new();
        for resource in shared {
            if let Some(Kind::Workload(workload)) = &resource.kind
                && !workload.waypoint.is_empty()
            {
                by_waypoint.entry(workload.waypoint.as_str()).or_default().push(workload);
            }
        }
        for workloads in by_waypoint.values_mut() {
            workloads.sort_by(|a, b| a.uid.cmp(&b.uid));
        }
        Self { by_waypoint }
    }

    /// One `BoundWorkload` resource (named by uid) per workload bound to `namespace/name`.
    pub(super) fn resources(&self, namespace: &str, name: &str, mesh: &MeshConfig) -> Vec<Resource> {
        let key = format!("{namespace}/{name}");
        self.by_waypoint
            .get(key.as_str())
            .into_iter()
            .flatten()
            .map(|w| Resource { name: w.uid.clone(), kind: Some(Kind::BoundWorkload(bound(w, mesh))) })
            .collect()
    }
}

/// A captured pod is reached over HBONE and must present its service account's identity, as an
/// `LbEndpoint` of a captured pod; any other is reached in plaintext.
fn bound(workload: &Workload, mesh: &MeshConfig) -> BoundWorkload {
    let (identity, transport) = if workload.captured {
        (
            format!("spiffe://{}/ns/{}/sa/{}", mesh.trust_domain, workload.namespace, workload.service_account),
            EndpointTransport::Hbone,
        )
    } else {
        (String::new(), EndpointTransport::Plaintext)
    };
    BoundWorkload {
        uid: workload.uid.clone(),
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        addresses: workload.addresses.clone(),
        identity,
        transport: transport.into(),
        node: workload.node.clone(),
    }
}
