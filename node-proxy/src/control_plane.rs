//! The control-plane source: subscribes as this node, turns each accepted configuration into a
//! [`ClusterView`] and persists it. While the control plane is away the last view stays in force.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use ambit_common::{
    api::v1::{Hello, ResourceType, hello::Proxy, resource::Kind},
    discovery::{ConnectionStatus, ResourceSet, SubscriberConfig, subscribe},
};
use tokio::sync::watch;

use crate::{
    cluster::{ClusterView, PersistedView, SharedView},
    mesh::Mesh,
};

/// What a subscription yields: the connection's health, the enrollment view, the mesh index.
pub(crate) struct Subscription {
    pub(crate) status: watch::Receiver<ConnectionStatus>,
    pub(crate) view: watch::Receiver<SharedView>,
    pub(crate) mesh: watch::Receiver<Arc<Mesh>>,
}

/// Subscribes to `endpoint` as node `node` (over TLS when `tls` is given, sending the token in
/// its file). The first view is the persisted one, if any.
pub(crate) fn start(
    endpoint: &str,
    node: &str,
    state_dir: &Path,
    tls: Option<(Arc<rustls::ClientConfig>, PathBuf)>,
) -> Subscription {
    let persisted = PersistedView::new(state_dir);
    let initial = persisted.load().inspect(|view| {
        tracing::info!(
            version = view.version,
            pods = view.captured.len(),
            "using the persisted cluster view until the control plane answers"
        );
    });
    let (view_tx, view_rx) = watch::channel(Arc::new(initial.unwrap_or_default()));
    let (resources_tx, mut resources_rx) = watch::channel(Arc::new(ResourceSet::default()));
    let (status_tx, status_rx) = watch::channel(ConnectionStatus::default());
    let (mesh_tx, mesh_rx) = watch::channel(Arc::new(Mesh::default()));
    let hello =
        Hello { proxy: Some(Proxy::Node(node.to_owned())), proxy_version: env!("CARGO_PKG_VERSION").to_owned() };
    let mut config = SubscriberConfig::new(endpoint, hello);
    if let Some((tls, token_file)) = tls {
        config.tls = Some(tls);
        config.token_file = Some(token_file);
    }
    tokio::spawn(subscribe(config, validate, resources_tx, status_tx));
    let node = node.to_owned();
    tokio::spawn(async move {
        while resources_rx.changed().await.is_ok() {
            let resources = resources_rx.borrow_and_update().clone();
            let mesh = Mesh::from_resources(&resources, Some(&mesh_tx.borrow()));
            mesh_tx.send_replace(Arc::new(mesh));
            let view = ClusterView::from_resources(&resources, &node);
            let current = view_tx.borrow().clone();
            if view.namespaces != current.namespaces || view.captured != current.captured {
                persisted.store(&view);
                view_tx.send_replace(Arc::new(view));
            }
        }
    });
    Subscription { status: status_rx, view: view_rx, mesh: mesh_rx }
}

/// What makes a node proxy refuse (NACK) a configuration: things it could not act on.
fn validate(resources: &ResourceSet) -> Result<(), String> {
    for resource in resources.of_type(ResourceType::Workload) {
        if let Some(Kind::Workload(w)) = &resource.kind {
            if let Some(bad) = w.addresses.iter().find(|a| a.len() != 4 && a.len() != 16) {
                return Err(format!(
                    "workload {}: an address has {} bytes (must be 4 or 16)",
                    resource.name,
                    bad.len()
                ));
            }
            if w.namespace.is_empty() || w.node.is_empty() {
                return Err(format!("workload {}: namespace and node must be set", resource.name));
            }
        }
    }
    for resource in resources.of_type(ResourceType::Service) {
        if let Some(Kind::Service(s)) = &resource.kind
            && let Some(bad) = s.vips.iter().find(|a| a.len() != 4 && a.len() != 16)
        {
            return Err(format!("service {}: a VIP has {} bytes (must be 4 or 16)", resource.name, bad.len()));
        }
    }
    Ok(())
}
