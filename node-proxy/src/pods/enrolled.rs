//! An enrolled pod: its three in-pod listeners, their accept loops, and capture switched on.
//! Built by [`EnrolledPod::enroll`], torn down by [`EnrolledPod::unenroll`]; connections already
//! in progress are left alone either way.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsFd,
    sync::Arc,
};

use ambit_common::pod_api::PodSpec;
use ambit_ebpf_types::{HBONE_PORT, INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT};
use serde::Serialize;
use tokio::sync::watch;

use crate::{
    capture::{CaptureError, LinkState, PodCapture},
    netns::{Netns, listen, netns_cookie},
    proxy::{ListenerRole, PodContext, ProxyContext, prefetch_identity, spawn_accept_loop},
    records::PodRef,
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnrollError {
    #[error("pod {pod}: cannot open its network namespace {path}: {source} (has the pod gone?)")]
    Netns { pod: String, path: String, source: std::io::Error },
    #[error(
        "pod {pod}: cannot listen on {addr} inside the pod: {source} (is something in the pod \
         already using node-proxy ports 15001/15006/15008?)"
    )]
    Listen { pod: String, addr: SocketAddr, source: std::io::Error },
    #[error("pod {pod}: {source}")]
    Capture { pod: String, source: Box<CaptureError> },
    #[error("pod {pod}: {what}: {source}")]
    Io { pod: String, what: &'static str, source: std::io::Error },
}

impl EnrollError {
    /// The pod's network namespace no longer exists: the pod is gone (its CNI DEL was missed).
    pub(crate) fn pod_is_gone(&self) -> bool {
        matches!(self, Self::Netns { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// What the admin API shows about an enrolled pod.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnrolledInfo {
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns_cookie: u64,
    pub(crate) netns_inode: u64,
    pub(crate) sk_lookup_link: LinkState,
}

pub(crate) struct EnrolledPod {
    pub(crate) spec: PodSpec,
    pub(crate) info: EnrolledInfo,
    context: Arc<PodContext>,
    shutdown: watch::Sender<bool>,
}

impl EnrolledPod {
    pub(crate) fn enroll(spec: &PodSpec, proxy: &Arc<ProxyContext>) -> Result<Self, EnrollError> {
        let pod = spec.key();
        let ip = spec.ipv4().expect("validated pod specs have an IPv4 address");
        let netns = Netns::open(&spec.netns).map_err(|source| EnrollError::Netns {
            pod: pod.clone(),
            path: spec.netns.display().to_string(),
            source,
        })?;
        let bind = |port| {
            let addr = SocketAddr::from((ip, port));
            listen(&netns, addr).map_err(|source| EnrollError::Listen { pod: pod.clone(), addr, source })
        };
        let outbound = bind(OUTBOUND_PORT)?;
        let plaintext = bind(INBOUND_PLAINTEXT_PORT)?;
        let hbone = bind(HBONE_PORT)?;
        let netns_cookie = netns_cookie(outbound.as_fd()).map_err(|source| EnrollError::Io {
            pod: pod.clone(),
            what: "reading SO_NETNS_COOKIE",
            source,
        })?;

        // Accept loops first: once capture is on, connections must find someone listening.
        let context = Arc::new(PodContext {
            pod: PodRef { namespace: spec.namespace.clone(), name: spec.name.clone(), uid: spec.uid.clone() },
            ip,
            netns,
            identity: std::sync::Mutex::default(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let capture_handles = (
            plaintext.try_clone().map_err(|source| EnrollError::Io {
                pod: pod.clone(),
                what: "dup listener",
                source,
            })?,
            hbone.try_clone().map_err(|source| EnrollError::Io { pod: pod.clone(), what: "dup listener", source })?,
        );
        let runtime = proxy.runtime_for_pod();
        for (role, listener) in [
            (ListenerRole::Outbound, outbound),
            (ListenerRole::InboundPlaintext, plaintext),
            (ListenerRole::Hbone, hbone),
        ] {
            spawn_accept_loop(role, listener, &runtime, proxy.clone(), context.clone(), shutdown_rx.clone())
                .map_err(|source| EnrollError::Io { pod: pod.clone(), what: "registering listener", source })?;
        }
        let link = proxy
            .capture
            .enroll(&PodCapture {
                uid: &spec.uid,
                ip,
                netns: &context.netns,
                netns_cookie,
                plaintext_listener: &capture_handles.0,
                hbone_listener: &capture_handles.1,
            })
            .map_err(|source| {
                let _ = shutdown.send(true);
                EnrollError::Capture { pod: pod.clone(), source: Box::new(source) }
            })?;
        proxy.local_pods.insert(context.clone());
        tokio::spawn(prefetch_identity(proxy.clone(), context.clone(), shutdown_rx));
        let info = EnrolledInfo { ip, netns_cookie, netns_inode: context.netns.inode(), sk_lookup_link: link };
        tracing::info!(pod = %pod, %ip, netns_cookie, "pod enrolled: its traffic is captured");
        Ok(Self { spec: spec.clone(), info, context, shutdown })
    }

    /// Outbound capture off, inbound capture off, then listeners drain and close.
    pub(crate) fn unenroll(self, proxy: &ProxyContext) -> Result<(), EnrollError> {
        let pod = self.spec.key();
        let capture_err = |source| EnrollError::Capture { pod: pod.clone(), source: Box::new(source) };
        let outbound = proxy.capture.stop_outbound(self.info.netns_cookie).map_err(capture_err);
        let inbound = proxy.capture.stop_inbound(&self.spec.uid, self.context.ip).map_err(capture_err);
        let _ = self.shutdown.send(true);
        proxy.local_pods.remove(&self.context);
        if let Some(hbone) = &proxy.hbone {
            self.context.release_identity(hbone);
        }
        tracing::info!(pod = %pod, "pod unenrolled: new connections bypass the node proxy");
        outbound.and(inbound)
    }
}
