//! A test HBONE client: opens one mutual-TLS HTTP/2 CONNECT tunnel to a pod's port 15008 from a
//! network namespace of the test's choice, presenting whatever certificate the test hands it —
//! the mesh's own, one for another workload, a self-signed one, an expired one, or a certificate
//! with a key that is not its own. It is what an attacker (or a misbehaving peer) would run, so
//! tests can check what the node proxies refuse.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::{
    errors::error_chain,
    hbone::{Settings, client::Pool},
    identity::{SpiffeId, TrustBundle, WorkloadCert, tls::hbone_client_config},
    netns::Netns,
};
use anyhow::Context;
use rustls::{
    client::ResolvesClientCert,
    pki_types::{CertificateDer, ServerName},
    sign::CertifiedKey,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The whole exchange is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the client presents.
pub enum ClientCredential {
    /// A certificate and its own key.
    Cert(WorkloadCert),
    /// `chain`'s certificates with the key of `key_from`: a certificate without its private key.
    ForeignKey { chain: Vec<CertificateDer<'static>>, key_from: WorkloadCert },
}

/// One attempt: sends `payload` through a tunnel to `authority` (the original destination
/// `ip:port`) via `server` (the pod's `ip:15008`), half-closes, and returns what came back.
/// `Err` carries the failure (TLS refusal, HTTP status, reset) as text.
pub fn echo_through_tunnel(
    netns: &Netns,
    server: SocketAddr,
    authority: SocketAddr,
    credential: ClientCredential,
    bundle: &TrustBundle,
    server_identity: &SpiffeId,
    payload: &[u8],
) -> anyhow::Result<Result<Vec<u8>, String>> {
    ambit_common::identity::install_default_crypto_provider();
    let config = match credential {
        ClientCredential::Cert(cert) => hbone_client_config(&cert, bundle, server_identity),
        ClientCredential::ForeignKey { chain, key_from } => {
            // The real config (server verification, ALPN, TLS 1.3), with the client's
            // certificate swapped for `chain` under `key_from`'s key.
            let mut config = (*hbone_client_config(&key_from, bundle, server_identity)).clone();
            let key = key_from.certified_key().key.clone();
            config.client_auth_cert_resolver = Arc::new(FixedCert(Arc::new(CertifiedKey::new(chain, key))));
            Arc::new(config)
        }
    };
    let payload = payload.to_vec();
    // A thread of its own: the runtime's sockets are created in `netns` (current-thread runtime).
    let netns = Netns::open(netns.path()).context("reopening the network namespace")?;
    let outcome = std::thread::spawn(move || {
        netns.run(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            Ok(runtime.block_on(async {
                match tokio::time::timeout(TIMEOUT, exchange(server, authority, config, payload)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
                }
            }))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the HBONE client thread panicked"))?
    .context("running the HBONE client in the namespace")?;
    Ok(outcome)
}

async fn exchange(
    server: SocketAddr,
    authority: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let pool: Pool<()> = Pool::new(Settings::default());
    let connect = || async move {
        let tcp = tokio::net::TcpStream::connect(server).await?;
        tokio_rustls::TlsConnector::from(config).connect(ServerName::IpAddress(server.ip().into()), tcp).await
    };
    let stream = pool.open(&(), authority, connect).await.map_err(|e| error_chain(&e))?;
    let (mut read, mut write) = ambit_common::relay::Duplex::into_split(stream);
    write.write_all(&payload).await.map_err(|e| format!("sending: {}", error_chain(&e)))?;
    write.shutdown().await.map_err(|e| format!("half-closing: {}", error_chain(&e)))?;
    let mut received = Vec::new();
    read.read_to_end(&mut received).await.map_err(|e| format!("receiving: {}", error_chain(&e)))?;
    Ok(received)
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
