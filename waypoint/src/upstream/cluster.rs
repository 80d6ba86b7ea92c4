//! A `Cluster` at run time: its load balancer (rebuilt when the set of ejected endpoints
//! changes), outlier detector, circuit breakers and a connection pool per endpoint.
//!
//! A new version of a cluster (endpoints added or removed, policy changed) takes over what the
//! previous one knew about the endpoints it keeps, by address: outlier state, active-request
//! counts, the round-robin position, pooled connections, and the breaker's counters. An
//! unchanged cluster is kept as it is.

use std::{
    any::Any,
    sync::{Arc, Mutex, RwLock, Weak},
    time::{Duration, Instant},
};

use ambit_common::{
    api::v1::{Cluster, EndpointTransport, UpstreamProtocol},
    identity::SpiffeId,
};
use http::{Request, Response};
use hyper::body::Incoming;
use serde::Serialize;

use super::{
    TryError,
    breaker::{Breaker, BreakerStatus, Limits},
    connect::{Connector, Target, Transport},
    pool::{EndpointPool, HttpVersion},
};
use crate::{
    body::Body,
    lb::{Balancer, LbContext, LbError, Pick},
    outlier::{Detector, Outcome, OutlierError},
};

/// Envoy's `host_selection_retry_max_attempts` as Istio sets it: picks made to find an endpoint
/// not tried yet.
const OTHER_ENDPOINT_PICKS: usize = 5;

/// How often idle connections are looked for when no outlier interval is shorter.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Lb(#[from] LbError),
    #[error(transparent)]
    Outlier(#[from] OutlierError),
    #[error("cluster {cluster}: endpoints[{index}].{field}: {reason}")]
    Endpoint { cluster: String, index: usize, field: &'static str, reason: String },
    #[error("cluster {cluster}: upstreamProtocol {value} is unknown (is the control plane newer than this waypoint?)")]
    Protocol { cluster: String, value: i32 },
}

/// The response of one try, and what must live until its body is done.
pub struct Exchange {
    pub response: Response<Incoming>,
    pub guards: Vec<Box<dyn Any + Send>>,
}

pub struct ClusterState {
    pub name: String,
    pub config: Cluster,
    pub protocol: UpstreamProtocol,
    pub limits: Limits,
    pub breaker: Arc<Breaker>,
    balancer: RwLock<Arc<Balancer>>,
    detector: Option<Mutex<Detector>>,
    pools: Vec<Arc<EndpointPool>>,
}

impl ClusterState {
    /// Compiles `config` (named `name`), taking over `previous`'s state when it is the cluster's
    /// previous version; an unchanged cluster is `previous` itself.
    pub fn build(name: &str, config: &Cluster, previous: Option<&Arc<Self>>) -> Result<Arc<Self>, ClusterError> {
        if let Some(previous) = previous
            && previous.config == *config
        {
            return Ok(previous.clone());
        }
        let protocol = UpstreamProtocol::try_from(config.upstream_protocol)
            .map_err(|_| ClusterError::Protocol { cluster: name.to_owned(), value: config.upstream_protocol })?;
        let targets = config
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, e)| target(name, index, e))
            .collect::<Result<Vec<_>, _>>()?;
        let old_indices: Vec<Option<usize>> = targets
            .iter()
            .map(|t| previous.and_then(|p| p.pools.iter().position(|old| old.target.address == t.address)))
            .collect();
        let old_index = |i: usize| old_indices.get(i).copied().flatten();
        let balancer = match previous {
            Some(previous) => Balancer::carried_over(config, &previous.balancer())?,
            None => Balancer::new(config, crate::rng::next_u64())?,
        };
        let mut detector = Detector::for_cluster(config)?;
        if let (Some(detector), Some(old)) =
            (detector.as_mut(), previous.and_then(|p| p.detector.as_ref()).map(|d| d.lock().expect("detector lock")))
        {
            detector.carry_over(&old, old_index);
        }
        let balancer = match &detector {
            Some(d) if d.ejected().next().is_some() => balancer.with_health(|i| !d.is_ejected(i)),
            _ => balancer,
        };
        let pools = targets
            .into_iter()
            .enumerate()
            .map(|(i, target)| match old_index(i).map(|o| &previous.expect("an old index has a previous").pools[o]) {
                Some(pool) if pool.target == target => pool.clone(),
                _ => EndpointPool::new(target),
            })
            .collect();
        let state = Arc::new(Self {
            name: name.to_owned(),
            config: config.clone(),
            protocol,
            limits: Limits::from_config(config.connection_pool.as_ref()),
            breaker: previous.map(|p| p.breaker.clone()).unwrap_or_default(),
            balancer: RwLock::new(Arc::new(balancer)),
            detector: detector.map(Mutex::new),
            pools,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(housekeeping(Arc::downgrade(&state)));
        }
        Ok(state)
    }

    pub fn balancer(&self) -> Arc<Balancer> {
        self.balancer.read().expect("balancer lock").clone()
    }

    /// The endpoint for a try: `tried` are the endpoints earlier tries went to, avoided (up to
    /// a few picks) when `other_endpoints` is set. `None`: no endpoint is in use (503 UH).
    pub fn pick(&self, context: &LbContext<'_>, tried: &[usize], other_endpoints: bool) -> Option<Pick> {
        let balancer = self.balancer();
        let mut random = crate::rng::next_u64;
        let mut pick = balancer.pick(context, &mut random)?;
        if other_endpoints {
            for _ in 1..OTHER_ENDPOINT_PICKS {
                if !tried.contains(&pick.index) {
                    break;
                }
                pick = balancer.pick(context, &mut random)?;
            }
        }
        Some(pick)
    }

    pub fn target(&self, endpoint: usize) -> Option<&Target> {
        self.pools.get(endpoint).map(|p| &p.target)
    }

    /// One try to `endpoint`: a request slot, the active-request count, a pooled connection (for
    /// an `upgrade` request, an HTTP/1.1 connection of its own, see [`EndpointPool::send`]).
    pub async fn send(
        &self,
        endpoint: usize,
        version: HttpVersion,
        request: Request<Body>,
        upgrade: bool,
        connector: &Connector,
    ) -> Result<Exchange, TryError> {
        let pool = self.pools.get(endpoint).ok_or(TryError::Overflow)?;
        let slot = self.breaker.request(&self.limits).ok_or(TryError::Overflow)?;
        let active = self.balancer().begin(endpoint);
        let (response, lease) = pool.send(version, request, upgrade, &self.breaker, &self.limits, connector).await?;
        let mut guards: Vec<Box<dyn Any + Send>> = vec![Box::new(slot)];
        guards.extend(active.map(|a| Box::new(a) as Box<dyn Any + Send>));
        guards.extend(lease);
        Ok(Exchange { response, guards })
    }

    /// Counts what became of a try to `endpoint`; an ejection takes it out of load balancing.
    pub fn record(&self, endpoint: usize, outcome: Outcome) {
        let Some(detector) = &self.detector else { return };
        let mut detector = detector.lock().expect("detector lock");
        if let Some(ejection) = detector.record(endpoint, outcome, Instant::now()) {
            tracing::warn!(cluster = %self.name, endpoint = ?self.target(endpoint).map(|t| t.address),
                detection = ?ejection.detection, duration = ?ejection.duration, "endpoint ejected (outlier detection)");
            self.rebalance(&detector);
        }
    }

    fn rebalance(&self, detector: &Detector) {
        let mut balancer = self.balancer.write().expect("balancer lock");
        *balancer = Arc::new(balancer.with_health(|i| !detector.is_ejected(i)));
    }

    /// The outlier interval: endpoints whose ejection is over come back.
    fn tick(&self) {
        let Some(detector) = &self.detector else { return };
        let mut detector = detector.lock().expect("detector lock");
        let returned = detector.tick(Instant::now());
        if !returned.is_empty() {
            for endpoint in &returned {
                tracing::info!(cluster = %self.name, endpoint = ?self.target(*endpoint).map(|t| t.address),
                    "endpoint back in load balancing (ejection over)");
            }
            self.rebalance(&detector);
        }
    }

    fn sweep(&self) {
        self.pools.iter().for_each(|p| p.sweep(&self.limits));
    }

    pub fn status(&self) -> ClusterStatus {
        let detector = self.detector.as_ref().map(|d| d.lock().expect("detector lock"));
        let balancer = self.balancer();
        let endpoints = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| EndpointStatus {
                address: pool.target.address.to_string(),
                transport: match &pool.target.transport {
                    Transport::Plaintext => "plaintext".into(),
                    Transport::Hbone(id) => format!("hbone ({id})"),
                },
                ejected: detector.as_ref().is_some_and(|d| d.is_ejected(i)),
                active_requests: balancer.active_requests(i),
                connections_opened: pool.connections_opened(),
                idle_connections: pool.idle_connections(),
            })
            .collect();
        ClusterStatus {
            name: self.name.clone(),
            protocol: self.protocol.as_str_name(),
            endpoints,
            in_panic: balancer.in_panic(),
            limits: self.limits.clone(),
            breaker: self.breaker.status(),
            outlier_ejections: detector.as_ref().map(|d| {
                let stats = d.stats();
                stats.ejections_enforced_consecutive_5xx + stats.ejections_enforced_consecutive_gateway_failure
            }),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub name: String,
    pub protocol: &'static str,
    pub endpoints: Vec<EndpointStatus>,
    pub in_panic: bool,
    pub limits: Limits,
    pub breaker: BreakerStatus,
    pub outlier_ejections: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub address: String,
    pub transport: String,
    pub ejected: bool,
    pub active_requests: u64,
    pub connections_opened: u64,
    pub idle_connections: usize,
}

fn target(cluster: &str, index: usize, endpoint: &ambit_common::api::v1::LbEndpoint) -> Result<Target, ClusterError> {
    let error = |field, reason: String| ClusterError::Endpoint { cluster: cluster.to_owned(), index, field, reason };
    let ip = match endpoint.address.len() {
        4 => <[u8; 4]>::try_from(endpoint.address.as_slice()).map(std::net::IpAddr::from).ok(),
        16 => <[u8; 16]>::try_from(endpoint.address.as_slice()).map(std::net::IpAddr::from).ok(),
        _ => None,
    }
    .ok_or_else(|| error("address", format!("{} bytes (4 or 16 expected)", endpoint.address.len())))?;
    let port = u16::try_from(endpoint.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| error("port", format!("{} is not a TCP port", endpoint.port)))?;
    let transport = match EndpointTransport::try_from(endpoint.transport) {
        Ok(EndpointTransport::Plaintext) => Transport::Plaintext,
        Ok(EndpointTransport::Hbone) => {
            let id: SpiffeId = endpoint.identity.parse().map_err(|e| {
                error(
                    "identity",
                    format!("{:?}: {e} (an HBONE endpoint must name the identity it presents)", endpoint.identity),
                )
            })?;
            Transport::Hbone(id)
        }
        _ => return Err(error("transport", format!("{} is not HBONE or PLAINTEXT", endpoint.transport))),
    };
    Ok(Target { address: std::net::SocketAddr::new(ip, port), transport })
}

/// Runs the outlier interval (exactly every `interval`, as the detector expects) and the
/// idle-connection sweep while the cluster is in use.
async fn housekeeping(state: Weak<ClusterState>) {
    let interval = {
        let Some(state) = state.upgrade() else { return };
        state.detector.as_ref().map(|d| d.lock().expect("detector lock").interval())
    };
    let mut outlier = tokio::time::interval(interval.unwrap_or(Duration::from_secs(86_400)));
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    for ticker in [&mut outlier, &mut sweep] {
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
    }
    loop {
        let outlier_due = tokio::select! {
            _ = outlier.tick() => true,
            _ = sweep.tick() => false,
        };
        let Some(state) = state.upgrade() else { return };
        if outlier_due {
            state.tick();
        } else {
            state.sweep();
        }
    }
}
