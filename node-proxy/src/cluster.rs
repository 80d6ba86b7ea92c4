//! What the node proxy knows about the cluster, from whichever source it runs with:
//!
//! - **control plane** (`--control-plane`): namespaces and workloads pushed over gRPC. A pod the
//!   control plane knows is captured as it decides; a pod it does not know yet (just created)
//!   follows its namespace's labels, so a new pod is never left uncaptured while the control
//!   plane catches up. The view is persisted, so a node proxy restarted while the control plane
//!   is down keeps its pods' enrollment instead of releasing them.
//! - **standalone** (`--namespaces-file`): a YAML file of Namespaces; pods follow the labels in it
//!   and those the CNI reported.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use ambit_common::{
    api::v1::{ResourceType, resource::Kind},
    discovery::ResourceSet,
    enrollment::{self, Enrollment, Labels},
    namespaces::NamespaceSet,
};
use serde::{Deserialize, Serialize};

/// The inputs to enrollment decisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterView {
    /// Namespace labels, by namespace.
    pub(crate) namespaces: BTreeMap<String, Labels>,
    /// The control plane's capture decisions for this node's pods, by uid.
    pub(crate) captured: BTreeMap<String, bool>,
    /// Version of the control plane configuration this came from (0 in standalone mode).
    pub(crate) version: u64,
}

impl ClusterView {
    pub(crate) fn from_namespaces(set: &NamespaceSet) -> Self {
        let namespaces = set.iter().map(|(name, labels)| (name.to_owned(), labels.clone())).collect();
        Self { namespaces, captured: BTreeMap::new(), version: 0 }
    }

    /// The parts of a pushed configuration that enrollment on `node` needs.
    pub(crate) fn from_resources(resources: &ResourceSet, node: &str) -> Self {
        let namespaces = resources
            .of_type(ResourceType::Namespace)
            .filter_map(|r| match &r.kind {
                Some(Kind::Namespace(ns)) => Some((ns.name.clone(), ns.labels.clone().into_iter().collect())),
                _ => None,
            })
            .collect();
        let captured = resources
            .of_type(ResourceType::Workload)
            .filter_map(|r| match &r.kind {
                Some(Kind::Workload(w)) if w.node == node => Some((r.name.clone(), w.captured)),
                _ => None,
            })
            .collect();
        Self { namespaces, captured, version: resources.version() }
    }

    /// Whether the pod `uid` in `namespace`, with the labels the CNI reported, is in the mesh.
    pub(crate) fn decide(&self, uid: &str, namespace: &str, pod_labels: &Labels) -> Enrollment {
        match self.captured.get(uid) {
            Some(true) => Enrollment::CapturedByControlPlane,
            Some(false) => Enrollment::NotCapturedByControlPlane,
            None => enrollment::decide(self.namespaces.get(namespace), pod_labels),
        }
    }
}

/// The last view received from the control plane, kept across restarts.
pub(crate) struct PersistedView {
    path: PathBuf,
}

impl PersistedView {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self { path: state_dir.join("cluster-view.json") }
    }

    pub(crate) fn load(&self) -> Option<ClusterView> {
        let bytes = std::fs::read(&self.path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable persisted cluster view");
                None
            }
        }
    }

    pub(crate) fn store(&self, view: &ClusterView) {
        let tmp = self.path.with_extension("json.tmp");
        let result = serde_json::to_vec(view)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot persist the cluster view");
        }
    }
}

pub(crate) type SharedView = Arc<ClusterView>;

/// The running source, for the admin API.
pub(crate) enum ClusterSource {
    File(Arc<crate::namespaces::NamespaceSource>),
    ControlPlane {
        status: tokio::sync::watch::Receiver<ambit_common::discovery::ConnectionStatus>,
        view: tokio::sync::watch::Receiver<SharedView>,
    },
}

impl ClusterSource {
    pub(crate) fn status(&self) -> serde_json::Value {
        match self {
            Self::File(source) => serde_json::json!({ "type": "namespacesFile", "file": source.status() }),
            Self::ControlPlane { status, view } => serde_json::json!({
                "type": "controlPlane",
                "connection": *status.borrow(),
                "view": **view.borrow(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use ambit_common::api::v1::{Namespace, Resource, Update, Workload};

    use super::*;

    fn resource(name: &str, kind: Kind) -> Resource {
        Resource { name: name.into(), kind: Some(kind) }
    }

    #[test]
    fn control_plane_decisions_win_and_unknown_pods_follow_their_namespace() {
        let ambient = [("istio.io/dataplane-mode".to_owned(), "ambient".to_owned())].into_iter().collect();
        let workload = |node: &str, captured| Workload { node: node.into(), captured, ..Default::default() };
        let update = Update {
            version: 7,
            full: true,
            upserts: vec![
                resource("mesh", Kind::Namespace(Namespace { name: "mesh".into(), labels: ambient })),
                resource("uid-out", Kind::Workload(workload("n1", false))),
                resource("uid-in", Kind::Workload(workload("n1", true))),
                resource("uid-elsewhere", Kind::Workload(workload("n2", true))),
            ],
            removals: vec![],
            ..Default::default()
        };
        let resources = ResourceSet::default().apply(update).unwrap();
        let view = ClusterView::from_resources(&resources, "n1");
        assert_eq!(view.version, 7);
        assert_eq!(view.captured.len(), 2, "only this node's workloads");
        let none = Labels::new();
        assert_eq!(view.decide("uid-in", "mesh", &none), Enrollment::CapturedByControlPlane);
        assert_eq!(view.decide("uid-out", "mesh", &none), Enrollment::NotCapturedByControlPlane);
        assert_eq!(view.decide("uid-new", "mesh", &none), Enrollment::EnrolledByNamespace);
        assert_eq!(view.decide("uid-new", "other", &none), Enrollment::NamespaceUnknown);
    }
}
