//! Upstream: the clusters' runtime state and how one try reaches an endpoint.
//!
//! | module | job |
//! |---|---|
//! | `cluster` | a `Cluster` at run time: load balancer, outlier detector, circuit breakers, one pool per endpoint; state carried across updates |
//! | `pool` | HTTP/1.1 keep-alive and HTTP/2 multiplexed connections to one endpoint, pending requests |
//! | `breaker` | the circuit breakers' counters and limits |
//! | `connect` | plain TCP or HBONE (mTLS + CONNECT) to an endpoint, within the connect timeout |

pub mod breaker;
pub mod cluster;
pub mod connect;
pub mod pool;

use crate::outcome::{ConnectFailure, ResetReason};

pub use self::{
    cluster::{ClusterState, Exchange},
    connect::{ConnectError, Connector, Target, Transport},
    pool::HttpVersion,
};

/// How a try failed before the response headers.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("a circuit breaker of the cluster is full")]
    Overflow,
    #[error(transparent)]
    Connect(ConnectError),
    #[error("{message}")]
    Reset { reason: ResetReason, message: String },
}

impl TryError {
    /// A hyper client error, in Envoy's reset reasons (HTTP/2 reset reasons are only reachable
    /// through the error's sources).
    pub(crate) fn from_hyper(error: &hyper::Error, target: &Target) -> Self {
        let h2_reason = std::iter::successors(std::error::Error::source(error), |e| e.source())
            .find_map(|e| e.downcast_ref::<h2::Error>().and_then(h2::Error::reason));
        let reason = if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
            ResetReason::ProtocolError
        } else if h2_reason == Some(h2::Reason::REFUSED_STREAM) {
            ResetReason::RefusedStream
        } else if h2_reason.is_some() {
            ResetReason::Remote
        } else {
            ResetReason::ConnectionTermination
        };
        Self::Reset {
            reason,
            message: format!(
                "{} ({}): {}",
                target.address,
                reason_text(reason),
                ambit_common::errors::error_chain(error)
            ),
        }
    }

    /// The connect failure or reset, as the retry policy sees it.
    pub fn outcome(&self) -> crate::retry::TryOutcome {
        use crate::retry::TryOutcome;
        match self {
            Self::Overflow => TryOutcome::Overflow,
            Self::Connect(e) => TryOutcome::ConnectFailure(e.cause),
            Self::Reset { reason, .. } => TryOutcome::Reset(*reason),
        }
    }

    /// Whether the endpoint is to blame (for outlier detection): not for our own breakers, nor
    /// when the waypoint could not connect for a reason of its own.
    pub fn counts_against_endpoint(&self) -> bool {
        match self {
            Self::Overflow => false,
            Self::Connect(e) => e.cause != ConnectFailure::Local,
            Self::Reset { .. } => true,
        }
    }
}

fn reason_text(reason: ResetReason) -> &'static str {
    match reason {
        ResetReason::Remote => "reset by the endpoint",
        ResetReason::RefusedStream => "stream refused by the endpoint",
        ResetReason::ConnectionTermination => "connection closed before the response",
        ResetReason::ProtocolError => "invalid HTTP response",
    }
}
