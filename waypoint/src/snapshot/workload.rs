//! Workloads bound to this waypoint (`BoundWorkload`s, for waypoints with
//! `istio.io/waypoint-for: workload|all`): node proxies send traffic addressed to such a pod's
//! IP here with CONNECT `<pod ip>:<port>`.
//!
//! Istio's waypoint serves that traffic on its "direct" filter chains (no service, so no
//! VirtualService): the waypoint's own L7 policy, then the original destination, with the
//! protocol sniffed (`direct-http` / `direct-tcp`). Here each (address, port) a client uses gets,
//! on first use, a synthesized [`ServicePort`] the pipeline runs unchanged:
//!
//! - protocol undeclared, so the stream is detected (HTTP/1, HTTP/2 or TCP);
//! - one HTTP route [`ROUTE_NAME`] with no match, forwarding to the cluster `workload|<uid>|<port>`
//!   with no timeout and no retries — Envoy's default inbound route as istiod builds it for
//!   these chains (`BuildDefaultHTTPInboundRoute`: timeout 0, no retry policy); the client's
//!   own retries are not doubled here;
//! - one TCP route to the same cluster;
//! - the cluster: the one endpoint `<pod ip>:<port>`, HBONE expecting the pod's identity when it
//!   is captured, plaintext otherwise; the request's HTTP version upstream; no outlier detection,
//!   no limits, Envoy's default connect timeout.
//!
//! Synthesized ports live with their workload: a workload whose resource is unchanged across
//! updates keeps them, pooled connections included.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use ambit_common::{
    api::v1::{
        AppProtocol, BoundWorkload, Cluster, EndpointTransport, Forward, HttpRoute, LbEndpoint, PortRoutes, TcpRoute,
        UpstreamProtocol, WeightedCluster, http_route,
    },
    identity::SpiffeId,
};
use serde::Serialize;

use super::{CompileError, ServicePort};
use crate::upstream::ClusterState;

/// The route name workload-addressed HTTP requests are recorded with.
pub const ROUTE_NAME: &str = "workload";

/// Synthesized ports kept per workload. A client probing many ports of a bound pod must not
/// grow the waypoint without bound: past this, ports no stream is using are dropped (their
/// pooled connections and housekeeping task with them) before a new one is made, and if every
/// one is in use the new port is refused.
const MAX_PORTS: usize = 256;

/// What is wrong with a `BoundWorkload`; the waypoint refuses the update.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("bound workload {uid} ({namespace}/{name}): addresses[{index}] has {len} bytes (4 or 16 expected)")]
    Address { uid: String, namespace: String, name: String, index: usize, len: usize },
    #[error(
        "bound workload {uid} ({namespace}/{name}): transport {value} is not HBONE or PLAINTEXT (is the control \
         plane newer than this waypoint?)"
    )]
    Transport { uid: String, namespace: String, name: String, value: i32 },
    #[error(
        "bound workload {uid} ({namespace}/{name}): identity {identity:?}: {reason} (an HBONE workload must name \
         the SPIFFE identity it presents)"
    )]
    Identity { uid: String, namespace: String, name: String, identity: String, reason: String },
}

/// One workload bound to the waypoint, with the ports clients have used so far.
pub struct BoundTarget {
    config: BoundWorkload,
    addresses: Vec<IpAddr>,
    ports: Mutex<HashMap<SocketAddr, Arc<ServicePort>>>,
}

impl BoundTarget {
    /// Checks `config`; `previous` is this workload's target in the last snapshot, kept whole when
    /// the resource has not changed.
    pub(super) fn build(config: &BoundWorkload, previous: Option<&Arc<Self>>) -> Result<Arc<Self>, WorkloadError> {
        if let Some(previous) = previous.filter(|p| p.config == *config) {
            return Ok(previous.clone());
        }
        let (uid, namespace, name) = (config.uid.clone(), config.namespace.clone(), config.name.clone());
        let addresses = config
            .addresses
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                super::ip(bytes).ok_or_else(|| WorkloadError::Address {
                    uid: uid.clone(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    index,
                    len: bytes.len(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match EndpointTransport::try_from(config.transport) {
            Ok(EndpointTransport::Plaintext) => {}
            Ok(EndpointTransport::Hbone) => {
                config.identity.parse::<SpiffeId>().map_err(|e| WorkloadError::Identity {
                    uid: uid.clone(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    identity: config.identity.clone(),
                    reason: e.to_string(),
                })?;
            }
            _ => return Err(WorkloadError::Transport { uid, namespace, name, value: config.transport }),
        }
        Ok(Arc::new(Self { config: config.clone(), addresses, ports: Mutex::default() }))
    }

    pub fn uid(&self) -> &str {
        &self.config.uid
    }

    pub(super) fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// The service port for a CONNECT to `destination` (one of this workload's addresses),
    /// synthesized on first use.
    pub(super) fn port(&self, destination: SocketAddr) -> Option<Arc<ServicePort>> {
        let mut ports = self.ports.lock().expect("bound workload ports lock");
        if let Some(port) = ports.get(&destination) {
            return Some(port.clone());
        }
        if ports.len() >= MAX_PORTS {
            // Only this map holds an idle port: no stream or request has it.
            ports.retain(|_, port| Arc::strong_count(port) > 1);
            if ports.len() >= MAX_PORTS {
                tracing::warn!(uid = %self.config.uid, %destination, limit = MAX_PORTS,
                    "refusing a new port of a bound workload: every one of its ports in use is busy");
                return None;
            }
        }
        match self.synthesize(destination) {
            Ok(port) => {
                let port = Arc::new(port);
                ports.insert(destination, port.clone());
                Some(port)
            }
            Err(e) => {
                tracing::error!(uid = %self.config.uid, %destination, error = %e,
                    "cannot serve this workload address (a bug: bound workloads are checked when the update is applied)");
                None
            }
        }
    }

    fn synthesize(&self, destination: SocketAddr) -> Result<ServicePort, CompileError> {
        let cluster_name = format!("workload|{}|{}", self.config.uid, destination.port());
        let endpoint = LbEndpoint {
            workload_uid: self.config.uid.clone(),
            address: match destination.ip() {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            },
            port: u32::from(destination.port()),
            node: self.config.node.clone(),
            identity: self.config.identity.clone(),
            transport: self.config.transport,
        };
        let cluster = Cluster {
            hostname: format!("{}.{}", self.config.name, self.config.namespace),
            port: u32::from(destination.port()),
            namespace: self.config.namespace.clone(),
            upstream_protocol: UpstreamProtocol::Downstream.into(),
            endpoints: vec![endpoint],
            ..Default::default()
        };
        let state = ClusterState::build(&cluster_name, &cluster, None)?;
        let to_cluster = vec![WeightedCluster { cluster: cluster_name.clone(), weight: 100, ..Default::default() }];
        let routes = PortRoutes {
            port: u32::from(destination.port()),
            name: String::new(),
            protocol: AppProtocol::Unspecified.into(),
            http: vec![HttpRoute {
                name: ROUTE_NAME.into(),
                action: Some(http_route::Action::Forward(Forward {
                    clusters: to_cluster.clone(),
                    timeout_ms: 0,
                    retry: None,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            tcp: vec![TcpRoute { matches: Vec::new(), clusters: to_cluster }],
        };
        let clusters = BTreeMap::from([(cluster_name, state)]);
        let label = format!("workload {}/{}", self.config.namespace, self.config.name);
        let mut port = super::compile_port(&label, &routes, &clusters)?;
        port.addressed = super::Addressed::Workload;
        Ok(port)
    }

    pub(super) fn summary(&self) -> WorkloadSummary {
        let mut ports: Vec<String> =
            self.ports.lock().expect("bound workload ports lock").keys().map(ToString::to_string).collect();
        ports.sort();
        WorkloadSummary {
            uid: self.config.uid.clone(),
            workload: format!("{}/{}", self.config.namespace, self.config.name),
            addresses: self.addresses.clone(),
            identity: self.config.identity.clone(),
            transport: self.config.transport().as_str_name(),
            in_use: ports,
        }
    }
}

/// A bound workload in `/config_dump`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WorkloadSummary {
    uid: String,
    workload: String,
    addresses: Vec<IpAddr>,
    identity: String,
    transport: &'static str,
    /// The `ip:port`s clients have reached so far.
    in_use: Vec<String>,
}

#[cfg(test)]
mod tests;
