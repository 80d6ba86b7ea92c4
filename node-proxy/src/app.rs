//! Start-up order matters: capture is loaded (and a previous instance's pins adopted) first, then
//! the persisted pods are re-enrolled, and only then does the node proxy report ready.

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context;

use crate::{
    capture::Capture,
    cluster::ClusterSource,
    config::{ClusterSourceConfig, Config},
    control_plane,
    http::{self, admin::AdminState},
    namespaces::NamespaceSource,
    pods::{self, StateFile},
    proxy::ProxyContext,
    records::Recorder,
};

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
    let capture = Arc::new(Capture::load(&config.bpffs, &config.cgroup_root)?);
    for link in capture.cgroup_links() {
        tracing::info!(program = link.program, link_id = link.link_id, program_id = link.program_id,
            origin = ?link.origin, "capture program in place");
    }
    let proxy = Arc::new(ProxyContext { capture, records: Recorder::new(), connect_timeout: config.connect_timeout });
    let (cluster_source, cluster_updates) = match &config.cluster_source {
        ClusterSourceConfig::NamespacesFile { path } => {
            let (source, updates) = NamespaceSource::start(path, &config.state_dir);
            (ClusterSource::File(source), updates)
        }
        ClusterSourceConfig::ControlPlane { endpoint } => {
            let (status, updates) = control_plane::start(endpoint, &config.node_name, &config.state_dir);
            (ClusterSource::ControlPlane { status, view: updates.clone() }, updates)
        }
    };
    let (pods, startup_prune) =
        pods::start(config.node_name.clone(), proxy.clone(), cluster_updates, StateFile::new(&config.state_dir))
            .context("restoring persisted pods")?;
    tracing::info!(?startup_prune, "removed capture state left for pods that are gone");
    http::api::serve(&config.api_socket, pods.clone())
        .with_context(|| format!("serving the pod API on {}", config.api_socket.display()))?;
    let admin_addr = config.admin_addr;
    let admin = Arc::new(AdminState {
        config: config.clone(),
        pods,
        proxy,
        cluster_source,
        startup_prune,
        ready: AtomicBool::new(false),
    });
    http::admin::serve(admin_addr, admin.clone())
        .await
        .with_context(|| format!("serving the admin API on {admin_addr}"))?;
    admin.set_ready();
    tracing::info!(node = %config.node_name, api = %config.api_socket.display(), admin = %admin_addr, "node proxy ready");

    shutdown_signal().await;
    // Links and maps stay pinned: until a node proxy runs again, enrolled pods' connections are
    // refused rather than let through uncaptured.
    tracing::info!("shutting down; capture stays in place (fail closed) until the next start");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
