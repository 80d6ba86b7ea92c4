//! Fault injection: what Istio's `fault` (Envoy's fault filter, applied before the route's
//! action) does to one request, decided from two draws the caller makes.
//!
//! As in Envoy: delay and abort are drawn independently, each affecting the request when its
//! draw, uniform in `[0, 1_000_000)`, is below its `per_million` (so `0` never applies and
//! `1_000_000` always does); a delay of 0 ms is no delay; a delayed request can still be aborted,
//! after the delay. A delay adds the flag `DI` to whatever the response turns out to be; an abort
//! answers with `fault filter abort` and the flag `FI` ([`Failure::FaultAbort`]), a gRPC status
//! abort as a trailers-only response with HTTP status 200.
//!
//! Envoy draws the abort when the delay ends; drawing both up front, as here, is the same since
//! the draws are independent.

#[cfg(test)]
mod tests;

use std::time::Duration;

use ambit_common::api::v1::{Fault, fault_abort::Status};
use http::StatusCode;

use crate::outcome::{Abort, Failure, GrpcStatus, ResponseFlag, ResponseFlags};

/// Draws are uniform in `[0, DRAWS)`.
pub const DRAWS: u32 = 1_000_000;

/// Why a route's fault cannot be used; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("fault.{which}.perMillion: {per_million} is more than 1000000 (100 %)")]
    ShareOutOfRange { which: &'static str, per_million: u32 },
    #[error("fault.abort: neither httpStatus nor grpcStatus is set")]
    AbortWithoutStatus,
    #[error("fault.abort.httpStatus: {0} is not a status Envoy aborts with (200 to 599)")]
    InvalidHttpStatus(u32),
    #[error("fault.abort.grpcStatus: {0} is not a gRPC status code (0 to 16)")]
    InvalidGrpcStatus(u32),
}

/// A route's fault, checked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injector {
    /// The delay (`None` when 0 ms) and its share of requests.
    delay: Option<(Option<Duration>, u32)>,
    abort: Option<(Abort, u32)>,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    /// Hold the request this long first.
    pub delay: Option<Duration>,
    /// Then answer it with this instead of forwarding it.
    pub abort: Option<Abort>,
}

impl Injector {
    pub fn new(fault: &Fault) -> Result<Self, FaultError> {
        let delay = fault
            .delay
            .map(|d| {
                let share = share("delay", d.per_million)?;
                let delay = (d.fixed_delay_ms > 0).then(|| Duration::from_millis(d.fixed_delay_ms));
                Ok((delay, share))
            })
            .transpose()?;
        let abort = fault.abort.map(|a| Ok((abort(a.status)?, share("abort", a.per_million)?))).transpose()?;
        Ok(Self { delay, abort })
    }

    /// The plan for a request, from two independent draws in `[0, DRAWS)`.
    pub fn plan(&self, delay_draw: u32, abort_draw: u32) -> Plan {
        Plan {
            delay: self.delay.and_then(|(delay, share)| delay.filter(|_| delay_draw < share)),
            abort: self.abort.and_then(|(abort, share)| (abort_draw < share).then_some(abort)),
        }
    }
}

impl Plan {
    /// `DI` when delayed, `FI` when aborted.
    pub fn flags(&self) -> ResponseFlags {
        let mut flags = ResponseFlags::NONE;
        if self.delay.is_some() {
            flags.insert(ResponseFlag::DelayInjected);
        }
        if self.abort.is_some() {
            flags.insert(ResponseFlag::FaultInjected);
        }
        flags
    }

    /// The failure the request ends with, when aborted.
    pub fn failure(&self) -> Option<Failure> {
        self.abort.map(Failure::FaultAbort)
    }
}

fn share(which: &'static str, per_million: u32) -> Result<u32, FaultError> {
    if per_million > DRAWS {
        return Err(FaultError::ShareOutOfRange { which, per_million });
    }
    Ok(per_million)
}

fn abort(status: Option<Status>) -> Result<Abort, FaultError> {
    match status {
        None => Err(FaultError::AbortWithoutStatus),
        Some(Status::HttpStatus(code)) => u16::try_from(code)
            .ok()
            .filter(|c| (200..600).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .map(Abort::Http)
            .ok_or(FaultError::InvalidHttpStatus(code)),
        Some(Status::GrpcStatus(code)) => {
            GrpcStatus::from_code(code).map(Abort::Grpc).ok_or(FaultError::InvalidGrpcStatus(code))
        }
    }
}
