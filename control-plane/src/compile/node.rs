//! Node proxy resources: namespaces, workloads, services, L4 authorization.

use std::collections::BTreeMap;

use ambit_common::{api::v1::Resource, config::Snapshot};

use super::MeshConfig;

pub(super) struct NodeResources {
    pub(super) shared: Vec<Resource>,
    pub(super) authorizations: BTreeMap<String, Resource>,
}

pub(super) fn compile(_snapshot: &Snapshot, _mesh: &MeshConfig) -> NodeResources {
    NodeResources { shared: Vec::new(), authorizations: BTreeMap::new() }
}
