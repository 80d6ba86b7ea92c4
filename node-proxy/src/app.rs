//! Start-up order matters: capture is loaded (and a previous instance's pins adopted) first, then
//! the persisted pods are re-enrolled, and only then does the node proxy report ready.

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context;

use ambit_common::{
    identity::{SpiffeId, TrustBundle, tls::control_plane_client_config},
    workers::Workers,
};
use tokio::sync::watch;

use crate::{
    capture::Capture,
    certs::{CaClient, CertManager},
    cluster::{ClusterSource, SharedView},
    config::{ClusterSourceConfig, Config},
    control_plane,
    http::{self, admin::AdminState},
    mesh::Mesh,
    namespaces::NamespaceSource,
    pods::{self, StateFile},
    proxy::Hbone,
    proxy::ProxyContext,
};

type Sources = (ClusterSource, watch::Receiver<SharedView>, watch::Receiver<Arc<Mesh>>, Option<Hbone>);

/// The source of enrollment decisions and mesh configuration; with a TLS control plane, also
/// what HBONE needs (the CA client, the connection pool).
fn cluster_source(config: &Config) -> anyhow::Result<Sources> {
    match &config.cluster_source {
        ClusterSourceConfig::NamespacesFile { path } => {
            let (source, updates) = NamespaceSource::start(path, &config.state_dir);
            let (_, mesh) = watch::channel(Arc::new(Mesh::default()));
            Ok((ClusterSource::File(source), updates, mesh, None))
        }
        ClusterSourceConfig::ControlPlane { endpoint, tls: None } => {
            tracing::warn!(%endpoint, "control plane over plaintext: no identities, so no HBONE; captured traffic is relayed as plain TCP");
            let subscription = control_plane::start(endpoint, &config.node_name, &config.state_dir, None);
            let source = ClusterSource::ControlPlane { status: subscription.status, view: subscription.view.clone() };
            Ok((source, subscription.view, subscription.mesh, None))
        }
        ClusterSourceConfig::ControlPlane { endpoint, tls: Some(tls) } => {
            let roots = std::fs::read_to_string(&tls.ca_root)
                .with_context(|| format!("reading the CA roots {} (--ca-root)", tls.ca_root.display()))?;
            let bundle =
                TrustBundle::from_pem(&roots).with_context(|| format!("{} (--ca-root)", tls.ca_root.display()))?;
            let expected: SpiffeId = tls.identity.parse().context("--control-plane-identity")?;
            let client_tls = control_plane_client_config(&bundle, &expected);
            let subscription = control_plane::start(
                endpoint,
                &config.node_name,
                &config.state_dir,
                Some((client_tls.clone(), tls.token_file.clone())),
            );
            let grpc = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .with_context(|| format!("--control-plane {endpoint}"))?
                .connect_timeout(std::time::Duration::from_secs(5))
                .tcp_nodelay(true);
            let certs = CertManager::new(CaClient::new(grpc, client_tls, tls.token_file.clone()), bundle);
            let settings = ambit_common::hbone::Settings::default();
            let hbone = Hbone {
                certs,
                pool: ambit_common::hbone::client::Pool::new(settings.clone()),
                trust_domain: tls.trust_domain.clone(),
                settings,
            };
            let source = ClusterSource::ControlPlane { status: subscription.status, view: subscription.view.clone() };
            Ok((source, subscription.view, subscription.mesh, Some(hbone)))
        }
    }
}

/// Closes live connections that a new configuration denies (policies, waypoint bindings).
async fn reauthorize_on_change(proxy: Arc<ProxyContext>, mut mesh: watch::Receiver<Arc<Mesh>>) {
    while mesh.changed().await.is_ok() {
        let current = mesh.borrow_and_update().clone();
        let revoked = proxy.live.reauthorize(&current, proxy.trust_domain());
        if revoked > 0 {
            tracing::info!(revoked, version = current.version, "closed connections the new policies deny");
        }
    }
}

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state directory {}", config.state_dir.display()))?;
    let capture = Arc::new(Capture::load(&config.bpffs, &config.cgroup_root)?);
    for link in capture.cgroup_links() {
        tracing::info!(program = link.program, link_id = link.link_id, program_id = link.program_id,
            origin = ?link.origin, "capture program in place");
    }
    let (cluster_source, cluster_updates, mesh, hbone) = cluster_source(&config)?;
    let workers = Workers::start(config.workers, "proxy-wrk").context("starting the worker threads (--workers)")?;
    tracing::info!(workers = workers.len(), "worker threads started");
    let proxy =
        Arc::new(ProxyContext::new(capture, config.connect_timeout, mesh.clone(), hbone, workers, config.same_node));
    tokio::spawn(reauthorize_on_change(proxy.clone(), mesh));
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
