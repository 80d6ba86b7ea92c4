//! Wiring: source → pipeline → gRPC server (Discovery and the CA, over TLS), plus the admin API.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;

use crate::{
    admin::{self, AdminState},
    ca::{
        self, Ca, authn::Authenticator, credentials::NodeCredentials, kubernetes::TokenReviewer, service::CaService,
        serving, settings::CallerAuth,
    },
    config::{Config, GrpcTransport, SourceConfig},
    grpc::{self, Router, Transport},
    metrics::Metrics,
    pipeline::Pipeline,
    push::{DiscoveryService, Subscriptions},
    source,
};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let (readings_tx, readings_rx) = mpsc::channel(1);
    let kube_client = match &config.source {
        SourceConfig::Directory { .. } => None,
        SourceConfig::Kubernetes => Some(
            kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API server (in-cluster service account, or $KUBECONFIG)")?,
        ),
    };
    // Held for the life of the control plane: dropping it stops the Kubernetes watchers.
    let _kubernetes = match (&config.source, &kube_client) {
        (SourceConfig::Directory { path }, _) => {
            tokio::spawn(source::local::run(path.clone(), readings_tx));
            None
        }
        (SourceConfig::Kubernetes, Some(client)) => {
            Some(source::kube::run(client.clone(), readings_tx, source::kube::KubeOptions::default()))
        }
        (SourceConfig::Kubernetes, None) => unreachable!("the client is made above in Kubernetes mode"),
    };
    let metrics = Arc::new(Metrics::default());
    let (pipeline, state) = Pipeline::start(config.mesh.clone(), readings_rx, metrics.clone());
    let ca = match &config.ca {
        Some(ca_config) => Some(start_ca(ca_config, &config, kube_client.as_ref(), pipeline.clone()).await?),
        None => None,
    };
    let subscriptions = Subscriptions::new(state.clone(), metrics.clone());
    let subscriptions = Arc::new(match &ca {
        Some(ca) if ca.authenticates_callers() => subscriptions.authenticated_by(ca.clone()),
        _ => {
            tracing::warn!(
                "subscribers are not authenticated (no CA, or no way for callers to prove their node): anyone \
                 who reaches the gRPC port can read the mesh configuration"
            );
            subscriptions
        }
    });
    let (transport, _rotation) = grpc_transport(&config, ca.as_ref()).await?;
    let router = Router::new(DiscoveryService::new(subscriptions.clone()), ca.clone().map(CaService::new));
    let grpc = grpc::serve(router, transport, {
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
        ca: ca.clone(),
    });
    admin::serve(config.admin_addr, admin_state)
        .await
        .with_context(|| format!("serving the admin API on {}", config.admin_addr))?;
    tracing::info!(
        grpc = %config.grpc_addr,
        transport = ?config.grpc_transport,
        admin = %config.admin_addr,
        source = ?config.source,
        "control plane started"
    );
    grpc.await.context("gRPC server")?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// Loads the root and builds the CA, reading pods from the pipeline's current snapshot.
async fn start_ca(
    ca_config: &ca::settings::CaConfig,
    config: &Config,
    kube_client: Option<&kube::Client>,
    pipeline: Arc<Pipeline>,
) -> anyhow::Result<Arc<Ca>> {
    let trust_domain = &config.mesh.trust_domain;
    let root = ca::load_root(ca_config, trust_domain, kube_client).await?;
    let authenticator = match (&ca_config.callers, kube_client) {
        (CallerAuth::NodeCredentials { file }, _) => Authenticator::NodeTokens(NodeCredentials::load(file)?),
        (CallerAuth::TokenReview { audience, node_proxy }, Some(client)) => Authenticator::TokenReview(Box::new(
            TokenReviewer::new(client.clone(), audience.clone(), node_proxy.clone()),
        )),
        (CallerAuth::TokenReview { .. }, None) => anyhow::bail!("TokenReview needs a Kubernetes client (--kubernetes)"),
        (CallerAuth::None, _) => {
            tracing::warn!(
                "no --node-credentials: no node proxy can prove its node, so the CA refuses every certificate request"
            );
            Authenticator::Nobody
        }
    };
    let snapshot: ca::SnapshotSource = Arc::new(move || pipeline.status().snapshot);
    if let Some(bundle) = &ca_config.bundle_file {
        tracing::info!(file = %bundle.display(), "trust bundle for proxies (--ca-root)");
    }
    let ca = Ca::new(root, trust_domain.clone(), ca_config.cert_lifetime, authenticator, snapshot);
    Ok(Arc::new(ca.with_bundle_file(ca_config.bundle_file.clone())))
}

/// The gRPC listener: TLS with the control plane's own rotating certificate, or plaintext.
/// The returned task (if any) rotates the certificate; it stops when dropped with the runtime.
async fn grpc_transport(
    config: &Config,
    ca: Option<&Arc<Ca>>,
) -> anyhow::Result<(Transport, Option<tokio::task::JoinHandle<()>>)> {
    let addr = config.grpc_addr;
    match (config.grpc_transport, ca) {
        (GrpcTransport::Tls, Some(ca)) => {
            let id = serving::control_plane_identity(&config.mesh.trust_domain, &config.mesh.root_namespace)?;
            let serving = serving::start(ca.clone(), id)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the gRPC address {addr}"))?;
            Ok((Transport::Tls { listener, config: serving.config }, Some(serving.task)))
        }
        (GrpcTransport::Tls, None) => anyhow::bail!("TLS needs the CA for the control plane's certificate"),
        (GrpcTransport::Plaintext, _) => {
            tracing::warn!(
                "!!! --plaintext-grpc: the gRPC port {addr} serves WITHOUT TLS. Configuration, node tokens and \
                 certificates cross the network in clear and anyone can impersonate this control plane. \
                 For debugging only !!!"
            );
            let incoming = TcpIncoming::bind(addr)
                .with_context(|| format!("binding the gRPC address {addr}"))?
                .with_nodelay(Some(true));
            Ok((Transport::Plaintext(incoming), None))
        }
    }
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
