//! An example for the node proxy: the HBONE listener terminates TLS with the certificate of the
//! pod the connection was addressed to, i.e. by the accepted socket's local address, and a pod's
//! certificate rotates without touching connections already made.
//!
//! rustls' `ClientHello` does not carry the local address, so the choice is made before the
//! handshake: one `ServerConfig` per local pod (built once, when the pod is enrolled), whose
//! resolver hands out that pod's current certificate.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
    time::Duration,
};

use ambit_common::identity::{SpiffeId, TrustBundle, WorkloadCert, peer_identity, testing::TestCa, tls};
use rustls::{
    ServerConfig,
    pki_types::ServerName,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The current certificate of one local pod; the certificate manager replaces it at half-life.
#[derive(Debug)]
struct PodCert(RwLock<Arc<CertifiedKey>>);

impl PodCert {
    fn new(cert: &WorkloadCert) -> Arc<Self> {
        Arc::new(Self(RwLock::new(cert.certified_key())))
    }

    fn rotate(&self, cert: &WorkloadCert) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = cert.certified_key();
    }
}

impl ResolvesServerCert for PodCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

/// The HBONE listener's view of the local pods: a server configuration per pod IP.
struct LocalPods {
    configs: HashMap<IpAddr, Arc<ServerConfig>>,
}

impl LocalPods {
    /// `None`: nothing enrolled at this address; close the connection.
    fn acceptor_for(&self, local: SocketAddr) -> Option<TlsAcceptor> {
        self.configs.get(&local.ip()).cloned().map(TlsAcceptor::from)
    }
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "bookinfo", sa).unwrap()
}

/// Connects to `addr` expecting `expected`; returns the TLS stream once one byte has come back.
async fn connect(
    addr: SocketAddr,
    cert: &WorkloadCert,
    bundle: &TrustBundle,
    expected: &SpiffeId,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(tls::hbone_client_config(cert, bundle, expected));
    let mut tls = connector.connect(ServerName::IpAddress(addr.ip().into()), tcp).await.unwrap();
    tls.write_all(b"x").await.unwrap();
    let mut byte = [0u8];
    tls.read_exact(&mut byte).await.unwrap();
    tls
}

#[tokio::test]
async fn server_certificate_is_the_one_of_the_pod_addressed_and_rotates() {
    let ca = TestCa::new("cluster.local");
    let bundle = ca.bundle();
    let hour = Duration::from_secs(3600);
    let pod_a = (IpAddr::V4(Ipv4Addr::LOCALHOST), PodCert::new(&ca.issue(&id("reviews"), hour)));
    let pod_b = (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), PodCert::new(&ca.issue(&id("ratings"), hour)));
    let pods = LocalPods {
        configs: [&pod_a, &pod_b]
            .into_iter()
            .map(|(ip, cert)| (*ip, tls::hbone_server_config(cert.clone(), &bundle)))
            .collect(),
    };
    // One listener for every local pod, as on a node (there: a transparent socket on 15008).
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let Some(acceptor) = pods.acceptor_for(tcp.local_addr().unwrap()) else { continue };
            tokio::spawn(async move {
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let client = peer_identity(tls.get_ref().1.peer_certificates().unwrap()).unwrap();
                assert_eq!(client, id("productpage"));
                // Echo until the client leaves.
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    tls.write_all(&buf[..n]).await.unwrap();
                }
            });
        }
    });

    let client = ca.issue(&id("productpage"), hour);
    let to_a = SocketAddr::new(pod_a.0, port);
    let to_b = SocketAddr::new(pod_b.0, port);
    let mut old = connect(to_a, &client, &bundle, &id("reviews")).await;
    connect(to_b, &client, &bundle, &id("ratings")).await;
    let first = old.get_ref().1.peer_certificates().unwrap()[0].clone();

    // Rotation: new connections get the new certificate, the old connection carries on.
    let renewed = ca.issue(&id("reviews"), 2 * hour);
    pod_a.1.rotate(&renewed);
    let new = connect(to_a, &client, &bundle, &id("reviews")).await;
    assert_eq!(new.get_ref().1.peer_certificates().unwrap()[0], renewed.chain()[0]);
    assert_ne!(renewed.chain()[0], first);
    old.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    old.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
    server.abort();
}
