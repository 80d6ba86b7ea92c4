//! Load balancing: which endpoint of a cluster a request (or TCP connection) goes to, chosen as
//! Envoy chooses it in an Istio waypoint.
//!
//! A [`Balancer`] is built from a `Cluster` once per configuration update: its endpoints, its
//! DestinationRule policy (checked then: a policy that cannot be used is an error naming the
//! cluster and the field) and, for consistent hashing, the ring or Maglev table. Envoy rebuilds its
//! load balancer whenever the set of healthy endpoints changes (an outlier ejection or return);
//! [`Balancer::with_health`] makes that rebuilt balancer, which keeps the round-robin position and
//! the active-request counts of the one it came from. The pipeline keeps the current balancer
//! behind an `Arc` and swaps it; [`Balancer::pick`] takes `&self` and no lock (the counters are
//! atomics), so requests pick concurrently.
//!
//! | policy | choice | module |
//! |---|---|---|
//! | `ROUND_ROBIN` | the endpoints in use in turn | `round_robin` |
//! | `LEAST_REQUEST` (Istio's default, also for `UNSPECIFIED`) | of two random endpoints, the one with fewer active requests | `least_request` |
//! | `RANDOM` | a random endpoint | `random` |
//! | `PASSTHROUGH` | any endpoint of the cluster, healthy or not (see below) | `random` |
//! | consistent hash | the request key's hash (`hash_policy`) on a ring (`ring_hash`, the default) or a Maglev table (`maglev`); a request without a key gets a random hash | |
//!
//! The endpoints in use are the healthy ones; when too few are healthy (`minHealthPercent`,
//! Envoy's panic threshold, see [`in_panic`]), all of them. With none in use there is no pick
//! (Envoy answers 503 with flag UH).
//!
//! PASSTHROUGH is Envoy's ORIGINAL_DST cluster: no balancing, the connection goes to the address
//! the caller connected to. Through an ambient waypoint that address is the service's VIP (traffic
//! addressed to a pod's own IP takes the bound-workload path, which has no DestinationRule), and
//! the waypoint cannot hand the request to the VIP itself: it would arrive in plaintext at a
//! waypoint-bound port, which the node proxy refuses. So the waypoint does what the VIP would
//! have done, as kube-proxy does: any of the cluster's endpoints, uniformly at random, with no
//! regard to outlier ejection or active requests (kube-proxy knows neither). The tunnel to it
//! stays mTLS.
//!
//! Randomness is the caller's: `pick` takes a source of uniform `u64` draws and uses them as Envoy
//! uses `random()` (`draw % n`; the draw itself as the hash of a request without a key): one for
//! RANDOM, PASSTHROUGH and for a keyless consistent-hash request, two for LEAST_REQUEST, none otherwise.
//!
//! Not modelled, as Istio configures none of it for a waypoint or `Cluster` has no field for it:
//! endpoint and locality weights, priorities, zone-aware routing, slow start, bounded-load hashing
//! (`hash_balance_factor`), and the offset Envoy applies to hash lookups for retries (Istio turns
//! `retry_other_endpoints` off for consistent-hash clusters).

mod hash_policy;
mod health;
mod least_request;
mod maglev;
mod random;
mod ring_hash;
mod round_robin;
#[cfg(test)]
mod tests;
mod xxhash;

use std::{net::SocketAddr, sync::Arc};

use ambit_common::api::v1::{
    Cluster, HashAlgorithm, LbEndpoint, LoadBalancer, SimpleLoadBalancer, load_balancer::Policy as LbPolicy,
};
use http::request::Parts;

use self::{
    hash_policy::HashPolicy, least_request::ActiveRequests, maglev::Maglev, ring_hash::Ring, round_robin::RoundRobin,
};
pub use self::{hash_policy::SetCookie, health::in_panic, least_request::ActiveRequest};

/// Why a cluster's load balancing cannot be used; names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster {cluster}: {field}: {reason}")]
pub struct LbError {
    /// The cluster's resource name, `<hostname>|<port>|<subset>`.
    pub cluster: String,
    /// The field, as in `loadBalancer.consistentHash.tableSize` or `endpoints[2]`.
    pub field: String,
    pub reason: String,
}

/// What a pick may look at.
#[derive(Clone, Copy, Debug)]
pub struct LbContext<'a> {
    /// The HTTP request; `None` for a TCP connection, which only `useSourceIp` hashes (Envoy's TCP
    /// proxy has no header, cookie or query parameter to hash).
    pub request: Option<&'a Parts>,
    /// The downstream peer: the source workload's address as HBONE reported it. `useSourceIp`
    /// hashes its IP; a generated cookie hashes it with `local`.
    pub peer: SocketAddr,
    /// The downstream connection's local address.
    pub local: SocketAddr,
}

/// Where a request goes: the endpoint at `index` in the cluster's endpoints. `set_cookie`: a
/// cookie the response must set (a `set-cookie` header), because the key was generated for this
/// request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub set_cookie: Option<SetCookie>,
}

/// A cluster's load balancer, for one set of healthy endpoints.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    /// Indices of the endpoints picks choose from, in endpoint order.
    in_use: Vec<usize>,
    panic: bool,
    /// The ring or Maglev table over `in_use`, for consistent hashing.
    table: Option<Table>,
}

/// What every balancer rebuilt from one `Cluster` shares.
#[derive(Debug)]
struct Shared {
    cluster: String,
    endpoints: Vec<Endpoint>,
    policy: Policy,
    min_health_percent: u32,
    round_robin: RoundRobin,
    active: ActiveRequests,
}

#[derive(Debug)]
struct Endpoint {
    config: LbEndpoint,
    address: SocketAddr,
    /// `address` as Envoy's `asString()` writes it (`10.0.0.1:8080`, `[fd00::1]:8080`): what ring
    /// and Maglev entries are hashed from.
    hash_key: String,
}

#[derive(Debug)]
enum Policy {
    RoundRobin,
    LeastRequest,
    Random,
    Passthrough,
    ConsistentHash { key: HashPolicy, algorithm: Algorithm },
}

#[derive(Debug)]
enum Algorithm {
    RingHash { min_ring_size: u64 },
    Maglev { table_size: u64 },
}

#[derive(Debug)]
enum Table {
    Ring(Ring),
    Maglev(Maglev),
}

impl Balancer {
    /// Compiles `cluster`, every endpoint healthy. `seed` (a random draw) is where round robin
    /// starts.
    pub fn new(cluster: &Cluster, seed: u64) -> Result<Self, LbError> {
        Self::build(cluster, seed, None)
    }

    /// Compiles a new version of a cluster, every endpoint healthy, keeping what `previous` (its
    /// last version) knew: the round-robin position, and the active-request counts of the
    /// endpoints that are still there (by address).
    pub fn carried_over(cluster: &Cluster, previous: &Balancer) -> Result<Self, LbError> {
        Self::build(cluster, previous.shared.round_robin.position(), Some(previous))
    }

    fn build(cluster: &Cluster, seed: u64, previous: Option<&Balancer>) -> Result<Self, LbError> {
        let name = format!("{}|{}|{}", cluster.hostname, cluster.port, cluster.subset);
        let error = |(field, reason): (String, String)| LbError { cluster: name.clone(), field, reason };
        let policy = compile_policy(cluster.load_balancer.as_ref()).map_err(error)?;
        let endpoints = cluster
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, config)| {
                let address = endpoint_address(config).map_err(|reason| error((format!("endpoints[{i}]"), reason)))?;
                Ok(Endpoint { config: config.clone(), address, hash_key: address.to_string() })
            })
            .collect::<Result<Vec<_>, LbError>>()?;
        let active = ActiveRequests::carried(endpoints.len(), |i| {
            let previous = &previous?.shared;
            let old = previous.endpoints.iter().position(|e| e.address == endpoints[i].address)?;
            previous.active.counter(old)
        });
        let shared = Shared {
            cluster: name.clone(),
            active,
            endpoints,
            policy,
            min_health_percent: cluster.outlier_detection.as_ref().map_or(0, |o| o.min_health_percent),
            round_robin: RoundRobin::new(seed),
        };
        Ok(Self::for_health(Arc::new(shared), |_| true))
    }

    /// The same cluster with only the endpoints for which `is_healthy(index)` holds in use (or all
    /// of them in panic mode), e.g. `|i| !detector.is_ejected(i)`.
    pub fn with_health(&self, is_healthy: impl Fn(usize) -> bool) -> Self {
        Self::for_health(Arc::clone(&self.shared), is_healthy)
    }

    fn for_health(shared: Arc<Shared>, is_healthy: impl Fn(usize) -> bool) -> Self {
        let (in_use, panic) = health::in_use(shared.endpoints.len(), is_healthy, shared.min_health_percent);
        let table = match &shared.policy {
            Policy::ConsistentHash { algorithm, .. } => {
                let keys = in_use.iter().map(|&i| (i, shared.endpoints[i].hash_key.as_str()));
                Some(match algorithm {
                    Algorithm::RingHash { min_ring_size } => Table::Ring(Ring::build(keys, *min_ring_size)),
                    Algorithm::Maglev { table_size } => Table::Maglev(Maglev::build(keys, *table_size)),
                })
            }
            _ => None,
        };
        Self { shared, in_use, panic, table }
    }

    /// Where the request described by `context` goes; `None` when no endpoint is in use.
    /// `random` returns uniform draws (see the module documentation for how many are taken).
    pub fn pick(&self, context: &LbContext<'_>, random: &mut dyn FnMut() -> u64) -> Option<Pick> {
        let shared = &*self.shared;
        let (index, set_cookie) = match &shared.policy {
            Policy::Passthrough => (random::pick_any(shared.endpoints.len(), random)?, None),
            Policy::RoundRobin => (shared.round_robin.pick(&self.in_use)?, None),
            Policy::LeastRequest => (least_request::pick(&shared.active, &self.in_use, random)?, None),
            Policy::Random => (random::pick(&self.in_use, random)?, None),
            Policy::ConsistentHash { key, .. } => {
                let (hash, set_cookie) = key.hash(context);
                let hash = match hash {
                    Some(hash) => hash,
                    None => random(),
                };
                let index = match self.table.as_ref()? {
                    Table::Ring(ring) => ring.lookup(hash),
                    Table::Maglev(maglev) => maglev.lookup(hash),
                }?;
                (index, set_cookie)
            }
        };
        Some(Pick { index, set_cookie })
    }

    /// Counts a request to endpoint `index` as active until the guard is dropped (what
    /// LEAST_REQUEST compares); `None` for an index that is not an endpoint.
    pub fn begin(&self, index: usize) -> Option<ActiveRequest> {
        self.shared.active.begin(index)
    }

    /// Requests now active to endpoint `index`.
    pub fn active_requests(&self, index: usize) -> u64 {
        self.shared.active.get(index)
    }

    /// The endpoint at `index`, as configured.
    pub fn endpoint(&self, index: usize) -> Option<&LbEndpoint> {
        self.shared.endpoints.get(index).map(|e| &e.config)
    }

    /// The address and port of the endpoint at `index`.
    pub fn address(&self, index: usize) -> Option<SocketAddr> {
        self.shared.endpoints.get(index).map(|e| e.address)
    }

    /// The indices picks choose from.
    pub fn in_use(&self) -> &[usize] {
        &self.in_use
    }

    /// Whether too few endpoints are healthy, so that all are in use (Envoy's `lb_healthy_panic`).
    pub fn in_panic(&self) -> bool {
        self.panic
    }

    /// The cluster's resource name.
    pub fn cluster(&self) -> &str {
        &self.shared.cluster
    }
}

/// `(field, reason)` of the first invalid part.
type FieldError = (String, String);

fn compile_policy(load_balancer: Option<&LoadBalancer>) -> Result<Policy, FieldError> {
    let policy = match load_balancer.and_then(|lb| lb.policy.as_ref()) {
        None => return Ok(Policy::LeastRequest),
        Some(LbPolicy::Simple(value)) => match SimpleLoadBalancer::try_from(*value) {
            Ok(SimpleLoadBalancer::Unspecified | SimpleLoadBalancer::LeastRequest) => Policy::LeastRequest,
            Ok(SimpleLoadBalancer::RoundRobin) => Policy::RoundRobin,
            Ok(SimpleLoadBalancer::Random) => Policy::Random,
            Ok(SimpleLoadBalancer::Passthrough) => Policy::Passthrough,
            Err(_) => return Err(("loadBalancer.simple".into(), format!("unknown policy {value}"))),
        },
        Some(LbPolicy::ConsistentHash(hash)) => {
            let key = HashPolicy::compile(hash.key.as_ref())?;
            let field = || "loadBalancer.consistentHash.tableSize".to_owned();
            let algorithm = match HashAlgorithm::try_from(hash.algorithm) {
                // Istio's default is the ring.
                Ok(HashAlgorithm::Unspecified | HashAlgorithm::RingHash) => {
                    let min_ring_size =
                        if hash.table_size == 0 { ring_hash::DEFAULT_MIN_RING_SIZE } else { hash.table_size };
                    if min_ring_size > ring_hash::MAX_RING_SIZE {
                        let reason = format!(
                            "a minimum ring size of {min_ring_size} is more than Envoy's maximum ring size {}",
                            ring_hash::MAX_RING_SIZE
                        );
                        return Err((field(), reason));
                    }
                    Algorithm::RingHash { min_ring_size }
                }
                Ok(HashAlgorithm::Maglev) => {
                    let table_size = if hash.table_size == 0 { maglev::DEFAULT_TABLE_SIZE } else { hash.table_size };
                    if table_size > maglev::MAX_TABLE_SIZE || !maglev::is_prime(table_size) {
                        let reason = format!(
                            "a Maglev table size must be a prime number up to {}, not {table_size}",
                            maglev::MAX_TABLE_SIZE
                        );
                        return Err((field(), reason));
                    }
                    Algorithm::Maglev { table_size }
                }
                Err(_) => {
                    let reason = format!("unknown algorithm {}", hash.algorithm);
                    return Err(("loadBalancer.consistentHash.algorithm".into(), reason));
                }
            };
            Policy::ConsistentHash { key, algorithm }
        }
    };
    Ok(policy)
}

fn endpoint_address(endpoint: &LbEndpoint) -> Result<SocketAddr, String> {
    let port = u16::try_from(endpoint.port).map_err(|_| format!("port {} is not a TCP port", endpoint.port))?;
    let ip = match endpoint.address.len() {
        4 => <[u8; 4]>::try_from(endpoint.address.as_slice()).map(std::net::IpAddr::from).ok(),
        16 => <[u8; 16]>::try_from(endpoint.address.as_slice()).map(std::net::IpAddr::from).ok(),
        _ => None,
    }
    .ok_or_else(|| format!("an address of {} bytes (4 or 16 expected)", endpoint.address.len()))?;
    Ok(SocketAddr::new(ip, port))
}
