//! Retries: whether a failed try is tried again under a route's `RetryPolicy` (Istio's
//! `retries`, compiled by the control plane with Istio's defaults written out), and how long to
//! wait first.
//!
//! The decision follows Envoy's router (`RetryStateImpl::wouldRetryFromHeaders`,
//! `wouldRetryFromReset`, `shouldRetry`), so a VirtualService retries here exactly when it would
//! under Istio:
//!
//! - a **response** is retried on `5xx` (any 5xx), `gateway-error` (502, 503, 504),
//!   `retriable-4xx` (409 only), `retriable-status-codes` (the listed ones), or a gRPC condition
//!   matching the `grpc-status` of its headers (a trailers-only response: Envoy decides when
//!   the headers arrive, so a status in trailers after a body is never retried). A response
//!   carrying `x-envoy-ratelimited` is retried on `envoy-ratelimited` and nothing else;
//! - a **connect failure** on `connect-failure`, and otherwise like a reset;
//! - a **reset** before the response headers (and a **per-try timeout**, which Envoy handles as
//!   a local reset) on `reset`, `5xx` or `gateway-error`; on `reset-before-request` while no try
//!   has sent a byte upstream; a refused stream also on `refused-stream`;
//! - a **circuit-breaker overflow**, never.
//!
//! Then, in Envoy's order: a request whose body was not kept cannot be sent again; a policy whose
//! retries are used up stops with URX; a full retry circuit breaker stops with UO. Envoy's
//! `retriable-headers` needs header matchers Istio has no way to give, and
//! `http3-post-connect-failure` needs HTTP/3, so neither ever holds here.
//!
//! Backoff is Envoy's fully jittered exponential backoff as its code does it
//! (`JitteredExponentialBackOffStrategy`): retry `n` waits a uniform draw from
//! `[0, min(2^(n-1) × base, 10 × base))`, base 25 ms unless the policy sets one. (Envoy's
//! router documentation still gives `[0, (2^n - 1) × base)`, the formula of its older code; the
//! first retry is the same under both.)

#[cfg(test)]
mod tests;

use std::time::Duration;

use ambit_common::api::v1::{RetryOn, RetryPolicy};
use http::StatusCode;

use crate::outcome::{ConnectFailure, Failure, GrpcStatus, ResetReason, ResponseFlag};

/// Why a retry policy cannot be used; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error(
        "retry.retryOn[{index}]: {value} is not a retry condition this waypoint knows (is it older than the control plane?)"
    )]
    UnknownCondition { index: usize, value: i32 },
    #[error("retry.retriableStatusCodes[{index}]: {code} is not an HTTP status (100 to 599)")]
    InvalidStatusCode { index: usize, code: u32 },
}

/// A route's retry policy, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    retries: u32,
    per_try_timeout: Option<Duration>,
    /// Bit `n` set: the `RetryOn` with value `n` is a condition.
    conditions: u32,
    status_codes: Vec<u16>,
    retry_other_endpoints: bool,
    base_interval: Duration,
}

/// How one try ended, when it did not simply succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// The response headers arrived (nothing has gone downstream yet).
    Response(ResponseHead),
    /// A circuit breaker of the cluster was full.
    Overflow,
    ConnectFailure(ConnectFailure),
    /// The upstream went away before the response headers.
    Reset(ResetReason),
    /// The per-try timeout expired before the response headers.
    PerTryTimeout,
}

/// What the retry decision reads of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// From the response headers.
    pub grpc_status: Option<GrpcStatus>,
    /// The response carries `x-envoy-ratelimited` (an upstream Envoy rate-limited it).
    pub envoy_ratelimited: bool,
}

impl ResponseHead {
    pub fn new(response: &http::response::Parts) -> Self {
        Self {
            status: response.status,
            grpc_status: GrpcStatus::from_headers(&response.headers),
            envoy_ratelimited: response.headers.contains_key("x-envoy-ratelimited"),
        }
    }
}

/// Where the request stands after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Tries made so far, the one that just ended included (1 after the first).
    pub tries: u32,
    /// Whether any try so far sent request bytes upstream (Envoy keeps this across tries).
    pub request_sent: bool,
    /// Whether the whole request is still buffered, so it can be sent again.
    pub replayable: bool,
    /// Whether the cluster's retry circuit breaker (`max_retries` in flight) has room.
    pub retry_budget: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after [`Policy::backoff`].
    Retry,
    /// The try's outcome is the request's.
    Stop(Stop),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// No condition of the policy holds for the outcome.
    NotRetriable,
    /// The policy would retry, but the request body was not kept (it outgrew the buffer).
    NotReplayable,
    /// The policy would retry, but its retries are used up (URX).
    LimitExceeded,
    /// The policy would retry, but the cluster's retry circuit breaker is full (UO).
    Overflow,
}

impl Stop {
    /// The flag Envoy adds for this stop.
    pub fn flag(self) -> Option<ResponseFlag> {
        match self {
            Self::NotRetriable | Self::NotReplayable => None,
            Self::LimitExceeded => Some(ResponseFlag::UpstreamRetryLimitExceeded),
            Self::Overflow => Some(ResponseFlag::UpstreamOverflow),
        }
    }
}

const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

impl Policy {
    pub fn new(policy: &RetryPolicy) -> Result<Self, RetryError> {
        let mut conditions = 0;
        for (index, &value) in policy.retry_on.iter().enumerate() {
            match RetryOn::try_from(value) {
                Ok(RetryOn::Unspecified) | Err(_) => return Err(RetryError::UnknownCondition { index, value }),
                Ok(on) => conditions |= bit(on),
            }
        }
        let status_codes = policy
            .retriable_status_codes
            .iter()
            .enumerate()
            .map(|(index, &code)| {
                u16::try_from(code)
                    .ok()
                    .filter(|c| (100..600).contains(c))
                    .ok_or(RetryError::InvalidStatusCode { index, code })
            })
            .collect::<Result<_, _>>()?;
        let base_interval = match policy.backoff_base_interval_ms {
            0 => DEFAULT_BASE_INTERVAL,
            ms => Duration::from_millis(ms),
        };
        Ok(Self {
            retries: policy.attempts,
            per_try_timeout: (policy.per_try_timeout_ms > 0).then(|| Duration::from_millis(policy.per_try_timeout_ms)),
            conditions,
            status_codes,
            retry_other_endpoints: policy.retry_other_endpoints,
            base_interval,
        })
    }

    /// Whether to try again after a try ended with `outcome`.
    pub fn decide(&self, outcome: &TryOutcome, attempt: &Attempt) -> Decision {
        let stop = if !self.would_retry(outcome, attempt.request_sent) {
            Stop::NotRetriable
        } else if !attempt.replayable {
            Stop::NotReplayable
        } else if attempt.tries > self.retries {
            Stop::LimitExceeded
        } else if !attempt.retry_budget {
            Stop::Overflow
        } else {
            return Decision::Retry;
        };
        Decision::Stop(stop)
    }

    /// How long to wait before retry number `retry` (1 for the first). `draw(n)` returns a
    /// uniform number in `[0, n)`.
    pub fn backoff(&self, retry: u32, draw: impl FnOnce(u64) -> u64) -> Duration {
        let base = u64::try_from(self.base_interval.as_millis()).unwrap_or(u64::MAX).max(1);
        let max = base.saturating_mul(10);
        let doubling = 1u64.checked_shl(retry.saturating_sub(1)).unwrap_or(u64::MAX);
        let range = base.saturating_mul(doubling).min(max);
        Duration::from_millis(draw(range).min(range - 1))
    }

    /// Each try's timeout. Envoy ignores one that is not shorter than the route timeout
    /// (`None`: no route timeout).
    pub fn per_try_timeout(&self, route_timeout: Option<Duration>) -> Option<Duration> {
        self.per_try_timeout.filter(|t| route_timeout.is_none_or(|route| *t < route))
    }

    /// Whether retries should prefer endpoints not tried yet.
    /// How many retries a request may take; 0: none.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn retry_other_endpoints(&self) -> bool {
        self.retry_other_endpoints
    }

    fn has(&self, on: RetryOn) -> bool {
        self.conditions & bit(on) != 0
    }

    fn would_retry(&self, outcome: &TryOutcome, request_sent: bool) -> bool {
        match outcome {
            TryOutcome::Response(response) => self.retries_response(response),
            TryOutcome::Overflow => false,
            TryOutcome::ConnectFailure(_) => {
                self.has(RetryOn::ConnectFailure) || self.retries_reset(false, request_sent)
            }
            TryOutcome::Reset(reason) => self.retries_reset(*reason == ResetReason::RefusedStream, request_sent),
            TryOutcome::PerTryTimeout => self.retries_reset(false, request_sent),
        }
    }

    fn retries_reset(&self, refused: bool, request_sent: bool) -> bool {
        (self.has(RetryOn::ResetBeforeRequest) && !request_sent)
            || self.has(RetryOn::Reset)
            || self.has(RetryOn::RetryOn5xx)
            || self.has(RetryOn::GatewayError)
            || (refused && self.has(RetryOn::RefusedStream))
    }

    fn retries_response(&self, response: &ResponseHead) -> bool {
        if response.envoy_ratelimited {
            return self.has(RetryOn::EnvoyRatelimited);
        }
        let status = response.status.as_u16();
        (self.has(RetryOn::RetryOn5xx) && response.status.is_server_error())
            || (self.has(RetryOn::GatewayError) && matches!(status, 502..=504))
            || (self.has(RetryOn::Retriable4xx) && status == 409)
            || (self.has(RetryOn::RetriableStatusCodes) && self.status_codes.contains(&status))
            || response.grpc_status.is_some_and(|grpc| self.retries_grpc(grpc))
    }

    fn retries_grpc(&self, status: GrpcStatus) -> bool {
        let condition = match status {
            GrpcStatus::Cancelled => RetryOn::Cancelled,
            GrpcStatus::DeadlineExceeded => RetryOn::DeadlineExceeded,
            GrpcStatus::ResourceExhausted => RetryOn::ResourceExhausted,
            GrpcStatus::Internal => RetryOn::Internal,
            GrpcStatus::Unavailable => RetryOn::Unavailable,
            _ => return false,
        };
        self.has(condition)
    }
}

impl TryOutcome {
    /// The failure the request ends with when the policy stops after this try (`retried`: a
    /// retry was made before it); `None` when the upstream's response goes downstream as it is.
    /// Add `stop.flag()` to the failure's flags: a reset after the last retry is `UR,URX`.
    pub fn failure(&self, stop: Stop, retried: bool) -> Option<Failure> {
        Some(match *self {
            Self::Response(response) if stop == Stop::LimitExceeded => {
                Failure::RetryLimitExceeded { last_status: response.status }
            }
            Self::Response(_) => return None,
            Self::Overflow => Failure::UpstreamOverflow { retried },
            Self::ConnectFailure(cause) => Failure::ConnectFailure { cause, retried },
            Self::Reset(reason) => Failure::UpstreamReset { reason, retried },
            Self::PerTryTimeout => Failure::PerTryTimeout,
        })
    }
}

fn bit(on: RetryOn) -> u32 {
    1 << (on as u32)
}
