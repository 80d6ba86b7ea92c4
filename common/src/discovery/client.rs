//! One long-lived Subscribe stream to the control plane, re-established forever.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::{ResourceSet, backoff::Backoff};
use crate::api::v1::{Ack, Hello, SubscribeRequest, discovery_client::DiscoveryClient, subscribe_request::Message};

/// Largest update a subscriber accepts (a full snapshot of a large cluster is tens of MB).
const MAX_UPDATE_BYTES: usize = 512 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// `http://host:port` of the control plane's gRPC endpoint.
    pub endpoint: String,
    pub hello: Hello,
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval and how long to wait for the answer: a control plane that vanished
    /// without closing the connection is detected within their sum.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// TLS towards the control plane (`https://` endpoints); `None` for plaintext.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Sent as `authorization: Bearer <token>` with the subscription (re-read per connection).
    pub token_file: Option<std::path::PathBuf>,
}

impl SubscriberConfig {
    pub fn new(endpoint: impl Into<String>, hello: Hello) -> Self {
        Self {
            endpoint: endpoint.into(),
            hello,
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(15),
            tls: None,
            token_file: None,
        }
    }
}

/// The subscriber's health, for admin endpoints.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub endpoint: String,
    pub connected: bool,
    /// When `connected` last changed (unix ms).
    pub since_unix_ms: u64,
    /// Version of the configuration in force (0: none received yet).
    pub config_version: u64,
    pub updates_received: u64,
    pub nacks_sent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Keeps a subscription alive forever: connects, says hello, applies and acknowledges updates,
/// publishes each accepted configuration on `state`, and reconnects with backoff and jitter when
/// the stream ends. The configuration in `state` stays in force while disconnected. `validate`
/// gets the configuration an update would produce; an `Err` NACKs it with that reason.
pub async fn subscribe<V>(
    config: SubscriberConfig,
    validate: V,
    state: watch::Sender<Arc<ResourceSet>>,
    status: watch::Sender<ConnectionStatus>,
) where
    V: Fn(&ResourceSet) -> Result<(), String> + Send + Sync,
{
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_max);
    status.send_modify(|s| s.endpoint = config.endpoint.clone());
    loop {
        let error = match session(&config, &validate, &state, &status, &mut backoff).await {
            Ok(()) => "the control plane closed the stream".to_owned(),
            Err(e) => e,
        };
        let delay = backoff.next_delay();
        tracing::warn!(endpoint = %config.endpoint, %error, retry_in = ?delay,
            "no control plane connection; serving the last configuration received");
        status.send_modify(|s| {
            if s.connected {
                s.since_unix_ms = now_ms();
            }
            s.connected = false;
            s.last_error = Some(error);
        });
        tokio::time::sleep(delay).await;
    }
}

async fn session<V>(
    config: &SubscriberConfig,
    validate: &V,
    state: &watch::Sender<Arc<ResourceSet>>,
    status: &watch::Sender<ConnectionStatus>,
    backoff: &mut Backoff,
) -> Result<(), String>
where
    V: Fn(&ResourceSet) -> Result<(), String>,
{
    let endpoint = Endpoint::from_shared(config.endpoint.clone())
        .map_err(|e| format!("invalid control plane address {:?}: {e}", config.endpoint))?
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let channel = match &config.tls {
        Some(tls) => crate::identity::grpc::tls_channel(endpoint, tls.clone()).await.map_err(|e| e.to_string()),
        None => endpoint.connect().await.map_err(|e| source_chain(&e)),
    }
    .map_err(|e| format!("cannot connect to {}: {e}", config.endpoint))?;
    let mut client = DiscoveryClient::new(channel).max_decoding_message_size(MAX_UPDATE_BYTES);
    let (requests, outgoing) = mpsc::channel(4);
    let hello = SubscribeRequest { message: Some(Message::Hello(config.hello.clone())) };
    requests.send(hello).await.map_err(|_| "request stream closed".to_owned())?;
    let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
    if let Some(path) = &config.token_file {
        let token = std::fs::read_to_string(path).map_err(|e| format!("reading the token {}: {e}", path.display()))?;
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| format!("the token in {} is not valid header text", path.display()))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut updates =
        client.subscribe(request).await.map_err(|e| format!("subscribe refused: {}", e.message()))?.into_inner();
    status.send_modify(|s| {
        s.connected = true;
        s.since_unix_ms = now_ms();
        s.last_error = None;
    });
    tracing::info!(endpoint = %config.endpoint, "subscribed to the control plane");
    while let Some(update) = updates.message().await.map_err(|e| format!("stream broke: {}", e.message()))? {
        backoff.reset();
        let version = update.version;
        let (full, upserts, removals) = (update.full, update.upserts.len(), update.removals.len());
        let outcome = state.borrow().apply(update).map_err(|e| e.to_string()).and_then(|next| {
            validate(&next)?;
            Ok(next)
        });
        let error = match outcome {
            Ok(next) => {
                tracing::debug!(
                    version,
                    full,
                    upserts,
                    removals,
                    resources = next.len(),
                    "configuration update applied"
                );
                state.send_replace(Arc::new(next));
                String::new()
            }
            Err(reason) => {
                tracing::error!(version, %reason, "configuration update refused (NACK); keeping the previous one");
                reason
            }
        };
        status.send_modify(|s| {
            s.updates_received += 1;
            s.config_version = state.borrow().version();
            if !error.is_empty() {
                s.nacks_sent += 1;
                s.last_error = Some(format!("NACKed version {version}: {error}"));
            }
        });
        let ack = SubscribeRequest { message: Some(Message::Ack(Ack { version, error })) };
        requests.send(ack).await.map_err(|_| "request stream closed".to_owned())?;
    }
    Ok(())
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
