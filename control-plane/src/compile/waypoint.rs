//! Waypoint resources: route tables and clusters per waypoint.

use std::collections::BTreeMap;

use ambit_common::{api::v1::Resource, config::Snapshot};

use super::{MeshConfig, WaypointKey};

pub(super) fn compile(_snapshot: &Snapshot, _mesh: &MeshConfig) -> BTreeMap<WaypointKey, Vec<Resource>> {
    BTreeMap::new()
}
