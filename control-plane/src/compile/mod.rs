//! Compilation: a pure function from the validated config [`Snapshot`] to the resources each
//! proxy receives. No IO, no clocks: the same snapshot always compiles to the same resources.
//!
//! - Node proxies all receive the same *shared* resources (namespaces, workloads, services,
//!   waypoints): any pod on any node may connect to any workload or service, through its
//!   waypoint. On top of that a node proxy receives the `Authorization` resources its own
//!   (local) workloads reference, the implicit "allow from the waypoint" ones included: policy
//!   is enforced where traffic arrives.
//! - A waypoint receives the route tables and clusters of the services bound to it, the
//!   AuthorizationPolicies that target it or those services, and the workloads bound to it
//!   (read off the node proxies' `Workload`s, so both agree on every binding).

pub(crate) mod binding;
mod node;
mod waypoint;

use std::collections::BTreeMap;

use ambit_common::{api::v1::Resource, config::Snapshot};

/// Mesh-wide settings that shape compilation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    /// SPIFFE trust domain: identities are `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
    pub trust_domain: String,
    /// Policies in this namespace apply mesh-wide (Istio's `istio-system`).
    pub root_namespace: String,
    /// Kubernetes cluster domain: services are `<name>.<namespace>.svc.<cluster domain>`.
    pub cluster_domain: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// A waypoint, by its Gateway's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct WaypointKey {
    pub namespace: String,
    pub name: String,
}

/// Everything compiled from one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compiled {
    /// Snapshot version this was compiled from.
    pub version: u64,
    /// Namespace, Workload, Service and Waypoint resources: every node proxy receives all of them.
    pub shared: Vec<Resource>,
    /// Authorization resources by name (`<namespace>/<name>`); a node proxy receives those its
    /// local workloads reference.
    pub authorizations: BTreeMap<String, Resource>,
    /// RouteTable, Cluster, HttpAuthorization and BoundWorkload resources per waypoint.
    pub waypoints: BTreeMap<WaypointKey, Vec<Resource>>,
}

pub fn compile(snapshot: &Snapshot, mesh: &MeshConfig) -> Compiled {
    let node = node::compile(snapshot, mesh);
    let waypoints = waypoint::compile(snapshot, mesh, &node.shared);
    Compiled { version: snapshot.version(), shared: node.shared, authorizations: node.authorizations, waypoints }
}
