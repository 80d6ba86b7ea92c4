//! Wiring: source → pipeline → gRPC push server, plus the admin API.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;
use tonic::transport::{Server, server::TcpIncoming};

use crate::{
    admin::{self, AdminState},
    config::{Config, SourceConfig},
    metrics::Metrics,
    pipeline::Pipeline,
    push::{DiscoveryService, Subscriptions},
    source,
};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (readings_tx, readings_rx) = mpsc::channel(1);
    // Held for the life of the control plane: dropping it stops the Kubernetes watchers.
    let _kubernetes = match &config.source {
        SourceConfig::Directory { path } => {
            tokio::spawn(source::local::run(path.clone(), readings_tx));
            None
        }
        SourceConfig::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API server (in-cluster service account, or $KUBECONFIG)")?;
            Some(source::kube::run(client, readings_tx, source::kube::KubeOptions::default()))
        }
    };
    let metrics = Arc::new(Metrics::default());
    let (pipeline, state) = Pipeline::start(config.mesh.clone(), readings_rx, metrics.clone());
    let subscriptions = Arc::new(Subscriptions::new(state.clone(), metrics.clone()));

    let incoming = TcpIncoming::bind(config.grpc_addr)
        .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))?
        .with_nodelay(Some(true));
    let grpc = Server::builder()
        // Detect proxies that vanished without closing their connection.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .serve_with_incoming_shutdown(DiscoveryService::new(subscriptions.clone()), incoming, {
            let subscriptions = subscriptions.clone();
            async move {
                shutdown_signal().await;
                subscriptions.close_all();
            }
        });
    let admin_state = Arc::new(AdminState {
        pipeline,
        subscriptions,
        state,
        metrics,
        config: serde_json::to_value(&config).unwrap_or_default(),
    });
    admin::serve(config.admin_addr, admin_state)
        .await
        .with_context(|| format!("serving the admin API on {}", config.admin_addr))?;
    tracing::info!(grpc = %config.grpc_addr, admin = %config.admin_addr, source = ?config.source, "control plane started");
    grpc.await.context("gRPC server")?;
    tracing::info!("control plane stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
