//! The waypoint's own identity, `spiffe://<td>/ns/<namespace>/sa/<service account>`: its current
//! certificate (kept renewed by `ambit_common::identity::ca_client::keep_renewed`, or fixed in
//! tests) and the mesh roots peers are verified against.

use std::{sync::Arc, time::SystemTime};

use ambit_common::identity::{SpiffeId, TrustBundle, WorkloadCert};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Identity {
    id: SpiffeId,
    cert: watch::Receiver<Option<WorkloadCert>>,
    bundle: watch::Receiver<TrustBundle>,
}

impl Identity {
    /// An identity whose certificate and roots arrive on these channels.
    pub fn new(
        id: SpiffeId,
        cert: watch::Receiver<Option<WorkloadCert>>,
        bundle: watch::Receiver<TrustBundle>,
    ) -> Self {
        Self { id, cert, bundle }
    }

    /// A certificate that never changes (tests).
    pub fn fixed(cert: WorkloadCert, bundle: TrustBundle) -> Self {
        let id = cert.identity().clone();
        Self::new(id, watch::channel(Some(cert)).1, watch::channel(bundle).1)
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate in force, unless there is none yet or it has expired (never presented:
    /// peers would refuse it anyway).
    pub fn cert(&self) -> Option<WorkloadCert> {
        self.cert.borrow().clone().filter(|c| c.not_after() > SystemTime::now())
    }

    pub fn bundle(&self) -> TrustBundle {
        self.bundle.borrow().clone()
    }

    /// Resolves the HBONE server's certificate at each handshake (so a renewal takes effect on
    /// the next connection).
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(CurrentCert(self.clone()))
    }
}

#[derive(Debug)]
struct CurrentCert(Identity);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.cert().map(|c| c.certified_key())
    }
}
