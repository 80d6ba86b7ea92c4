//! Start-up: the certificate (from the CA, kept renewed), the workers with their HBONE listener
//! sockets, the subscription (each accepted update compiled into the snapshot in force, or
//! NACKed), the admin API. The caller's runtime runs the control side; the workers run the
//! data path on their own threads.

use std::sync::Arc;

use ambit_common::{
    api::v1::{Hello, WaypointRef, hello::Proxy},
    discovery::{ConnectionStatus, ResourceSet, SubscriberConfig, subscribe},
    identity::{
        SpiffeId, TrustBundle,
        ca_client::{CaClient, keep_renewed},
        tls::control_plane_client_config,
    },
};
use anyhow::Context;
use tokio::sync::watch;

use crate::{
    admin::{self, AdminState},
    config::Config,
    identity::Identity,
    proxy::{Waypoint, inbound},
    snapshot::ConfigStore,
    workers,
};

/// The port endpoints' node proxies take HBONE on.
const HBONE_PORT: u16 = 15008;

/// A started waypoint.
pub struct Running {
    pub waypoint: Arc<Waypoint>,
    /// Where the HBONE listener and the admin API are bound.
    pub listen: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    /// The threads serving the HBONE listener.
    pub workers: workers::Workers,
}

/// Starts the waypoint and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _running = start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Starts everything and returns once the listeners are bound; the work goes on in tasks.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let roots = std::fs::read_to_string(&config.ca_root)
        .with_context(|| format!("reading the CA roots {} (--ca-root)", config.ca_root.display()))?;
    let bundle = TrustBundle::from_pem(&roots).with_context(|| format!("{} (--ca-root)", config.ca_root.display()))?;
    let control_plane: SpiffeId = config.control_plane_identity.parse().context("--control-plane-identity")?;
    let id: SpiffeId = config.identity.parse().context("the waypoint's identity")?;
    let tls = control_plane_client_config(&bundle, &control_plane);

    let endpoint = tonic::transport::Endpoint::from_shared(config.control_plane.clone())
        .with_context(|| format!("--control-plane {}", config.control_plane))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    let ca = Arc::new(CaClient::new(endpoint, tls.clone(), config.token_file.clone()));
    let (cert_tx, cert_rx) = watch::channel(None);
    let (bundle_tx, bundle_rx) = watch::channel(bundle);
    tokio::spawn(keep_renewed(ca, id.clone(), cert_tx, bundle_tx));
    let identity = Identity::new(id, cert_rx, bundle_rx);

    let store = ConfigStore::default();
    let stream_idle_timeout = config.stream_idle_timeout_secs.map(std::time::Duration::from_secs);
    let waypoint = Waypoint::new(store.clone(), identity, HBONE_PORT, stream_idle_timeout);
    // The workers first: the per-worker state clusters keep is sized when the first update is
    // compiled.
    let listeners = workers::bind(config.listen, config.workers)?;
    let listen = listeners[0].local_addr().context("the HBONE listener's address")?;
    let workers = workers::start(listeners, {
        let waypoint = waypoint.clone();
        move |listener| inbound::serve(listener, waypoint.clone())
    })?;

    let hello = Hello {
        proxy: Some(Proxy::Waypoint(WaypointRef { namespace: config.namespace.clone(), name: config.name.clone() })),
        proxy_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut subscriber = SubscriberConfig::new(config.control_plane.clone(), hello);
    subscriber.tls = Some(tls);
    subscriber.token_file = Some(config.token_file.clone());
    let (resources_tx, _resources) = watch::channel(Arc::new(ResourceSet::default()));
    let (status_tx, status) = watch::channel(ConnectionStatus::default());
    let validate = move |resources: &ResourceSet| store.apply(resources).map_err(|e| e.to_string());
    tokio::spawn(subscribe(subscriber, validate, resources_tx, status_tx));

    let state = Arc::new(AdminState {
        waypoint: waypoint.clone(),
        config: serde_json::to_value(&config).context("the configuration as JSON")?,
        subscription: status,
    });
    let admin = admin::serve(config.admin, state)
        .await
        .with_context(|| format!("serving the admin API on {} (--admin)", config.admin))?;
    tracing::info!(%listen, %admin, identity = %config.identity, workers = config.workers,
        gateway = %format_args!("{}/{}", config.namespace, config.name), "waypoint started");
    Ok(Running { waypoint, listen, admin, workers })
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
