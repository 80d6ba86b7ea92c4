//! Envoy's response flags: the short codes (`UF`, `URX`, …) its access log prints in
//! `%RESPONSE_FLAGS%`, which is what Istio users grep for
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-response-flags>).
//!
//! Only the flags a waypoint can raise are here. A request can collect several (a delayed then
//! aborted request is `DI,FI`; a connect failure after the last retry is `UF,URX`); they print
//! in Envoy's order, joined by commas, and `-` when there are none.

use std::fmt;

/// One flag, declared in the order Envoy prints them (its `CORE_RESPONSE_FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseFlag {
    /// 503: the cluster has no endpoint to send to.
    NoHealthyUpstream,
    /// 504: the route timeout, or the last try's per-try timeout, expired.
    UpstreamRequestTimeout,
    /// 503: the upstream reset the stream (HTTP/2 RST_STREAM, REFUSED_STREAM included).
    UpstreamRemoteReset,
    /// 503: no connection to the upstream could be made.
    UpstreamConnectionFailure,
    /// 503: the upstream connection closed before the response began.
    UpstreamConnectionTermination,
    /// 503: a circuit breaker was full (connections, pending requests, requests or retries).
    UpstreamOverflow,
    /// 404: no route matched.
    NoRouteFound,
    /// A fault delay was injected (not a failure).
    DelayInjected,
    /// A fault abort answered the request.
    FaultInjected,
    /// The client went away before the response was complete.
    DownstreamConnectionTermination,
    /// The retry policy would have retried, but its retries were used up.
    UpstreamRetryLimitExceeded,
    /// 400: the request was malformed.
    DownstreamProtocolError,
    /// 502: the upstream's response was malformed.
    UpstreamProtocolError,
}

impl ResponseFlag {
    pub const ALL: [Self; 13] = [
        Self::NoHealthyUpstream,
        Self::UpstreamRequestTimeout,
        Self::UpstreamRemoteReset,
        Self::UpstreamConnectionFailure,
        Self::UpstreamConnectionTermination,
        Self::UpstreamOverflow,
        Self::NoRouteFound,
        Self::DelayInjected,
        Self::FaultInjected,
        Self::DownstreamConnectionTermination,
        Self::UpstreamRetryLimitExceeded,
        Self::DownstreamProtocolError,
        Self::UpstreamProtocolError,
    ];

    /// Envoy's short string, as in `%RESPONSE_FLAGS%`.
    pub fn short(self) -> &'static str {
        match self {
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamRequestTimeout => "UT",
            Self::UpstreamRemoteReset => "UR",
            Self::UpstreamConnectionFailure => "UF",
            Self::UpstreamConnectionTermination => "UC",
            Self::UpstreamOverflow => "UO",
            Self::NoRouteFound => "NR",
            Self::DelayInjected => "DI",
            Self::FaultInjected => "FI",
            Self::DownstreamConnectionTermination => "DC",
            Self::UpstreamRetryLimitExceeded => "URX",
            Self::DownstreamProtocolError => "DPE",
            Self::UpstreamProtocolError => "UPE",
        }
    }

    /// Envoy's long name, as in `%RESPONSE_FLAGS_LONG%`.
    pub fn long(self) -> &'static str {
        match self {
            Self::NoHealthyUpstream => "NoHealthyUpstream",
            Self::UpstreamRequestTimeout => "UpstreamRequestTimeout",
            Self::UpstreamRemoteReset => "UpstreamRemoteReset",
            Self::UpstreamConnectionFailure => "UpstreamConnectionFailure",
            Self::UpstreamConnectionTermination => "UpstreamConnectionTermination",
            Self::UpstreamOverflow => "UpstreamOverflow",
            Self::NoRouteFound => "NoRouteFound",
            Self::DelayInjected => "DelayInjected",
            Self::FaultInjected => "FaultInjected",
            Self::DownstreamConnectionTermination => "DownstreamConnectionTermination",
            Self::UpstreamRetryLimitExceeded => "UpstreamRetryLimitExceeded",
            Self::DownstreamProtocolError => "DownstreamProtocolError",
            Self::UpstreamProtocolError => "UpstreamProtocolError",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The flags a request collected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u16);

impl ResponseFlags {
    pub const NONE: Self = Self(0);

    pub fn insert(&mut self, flag: ResponseFlag) {
        self.0 |= flag.bit();
    }

    /// These flags and `flag`.
    #[must_use]
    pub fn with(mut self, flag: ResponseFlag) -> Self {
        self.insert(flag);
        self
    }

    /// These flags and `other`'s.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub fn contains(self, flag: ResponseFlag) -> bool {
        self.0 & flag.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// In Envoy's order.
    pub fn iter(self) -> impl Iterator<Item = ResponseFlag> {
        ResponseFlag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl From<ResponseFlag> for ResponseFlags {
    fn from(flag: ResponseFlag) -> Self {
        Self::NONE.with(flag)
    }
}

impl FromIterator<ResponseFlag> for ResponseFlags {
    fn from_iter<I: IntoIterator<Item = ResponseFlag>>(flags: I) -> Self {
        flags.into_iter().fold(Self::NONE, Self::with)
    }
}

/// As Envoy's access log prints them: `UF,URX`, or `-`.
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, flag) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(flag.short())?;
        }
        Ok(())
    }
}
