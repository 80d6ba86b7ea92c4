//! Failures as the client sees them: the one place where every way a request can fail becomes
//! the response, and the access-log flags, a user of Envoy would see.
//!
//! Istio users debug a mesh by Envoy's answers (`503 UF`, `upstream request timeout`,
//! `RBAC: access denied`) and by the flags in its access log, so the waypoint gives the same
//! ones. For each [`Failure`]: the HTTP status, Envoy's local-reply body, the response flag, and
//! the reply to a gRPC request — Envoy answers those with HTTP 200 and a trailers-only response,
//! `grpc-status` mapped from the HTTP status ([`GrpcStatus::from_http`]) and `grpc-message` the
//! body text, percent-encoded.
//!
//! The texts are Envoy's (router `onUpstreamReset`/`onUpstreamTimeoutAbort`, fault filter,
//! RBAC filter, HTTP/1 codec), as of Envoy 1.2x–1.3x: connect failures say `remote connection
//! failure` where Envoy before 1.20 said `connection failure`.
//!
//! Not every flag comes from a failure: a fault delay adds `DI` to whatever the response is, and
//! the retry policy adds `URX` (retries used up) or `UO` (retry circuit breaker full) to the last
//! try's failure; the request pipeline collects them in a [`ResponseFlags`].

mod flags;
mod grpc;
#[cfg(test)]
mod tests;

use http::{HeaderMap, HeaderValue, StatusCode, header};

pub use self::{
    flags::{ResponseFlag, ResponseFlags},
    grpc::GrpcStatus,
};

/// Every way a request fails short of the upstream's own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No route of the port matched the request: 404 with an empty body (NR).
    NoRoute,
    /// The cluster has no endpoint, or none that is not ejected: 503 (UH).
    NoHealthyUpstream,
    /// A circuit breaker of the cluster (connections, pending or active requests) was full: 503
    /// (UO). Never retried.
    UpstreamOverflow { retried: bool },
    /// No connection to the endpoint could be made: 503 (UF).
    ConnectFailure { cause: ConnectFailure, retried: bool },
    /// The upstream went away before the response headers: 503 (UR, UC), or 502 (UPE) when its
    /// response was malformed.
    UpstreamReset { reason: ResetReason, retried: bool },
    /// The route timeout (all tries together) expired before the response headers: 504 (UT).
    RouteTimeout,
    /// The last try's per-try timeout expired and no retry followed: 504 (UT).
    PerTryTimeout,
    /// The last try got a response the policy retries, but its retries were used up: the
    /// response goes downstream as the upstream sent it, flagged URX. Not a local reply.
    RetryLimitExceeded { last_status: StatusCode },
    /// A fault abort (FI).
    FaultAbort(Abort),
    /// L7 authorization refused the request: 403 `RBAC: access denied`. Envoy's RBAC filter sets
    /// no response flag (its access log shows `-`; the reason is in the response code details).
    AccessDenied,
    /// The request was malformed or used something the waypoint does not support: 400
    /// `Bad Request` (DPE), as Envoy's HTTP/1 codec answers.
    BadRequest,
}

/// Why no connection could be made (Envoy's connection-failure reset reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The endpoint (or the path to it) refused or broke the connection, TLS and HBONE
    /// handshakes included.
    Remote,
    /// The cluster's connect timeout expired.
    Timeout,
    /// The waypoint could not open the connection itself.
    Local,
}

/// How the upstream went away before the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// It reset the stream (HTTP/2 RST_STREAM).
    Remote,
    /// It refused the stream (HTTP/2 REFUSED_STREAM: not processed, safe to retry).
    RefusedStream,
    /// The connection closed.
    ConnectionTermination,
    /// Its response was not valid HTTP.
    ProtocolError,
}

/// What a fault abort answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Http(StatusCode),
    /// Sent as is to gRPC requests (HTTP 200, trailers-only). A request that is not gRPC gets HTTP
    /// 200 with the text body, as from Envoy.
    Grpc(GrpcStatus),
}

/// What a local reply must look like to the client that sent the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Http,
    /// Headers as for GET, including `content-length`, but no body.
    Head,
    /// A gRPC request: a trailers-only response.
    Grpc,
}

impl RequestKind {
    /// Envoy's test: gRPC when `content-type` is `application/grpc` or starts with
    /// `application/grpc+` (so not grpc-web).
    pub fn of(request: &http::request::Parts) -> Self {
        let content_type = request.headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
        match content_type {
            Some(t) if t == b"application/grpc" || t.starts_with(b"application/grpc+") => Self::Grpc,
            _ if request.method == http::Method::HEAD => Self::Head,
            _ => Self::Http,
        }
    }
}

/// A response the waypoint sends itself. When `body` is empty the headers end the stream (for
/// gRPC: a trailers-only response).
#[derive(Debug)]
pub struct LocalReply {
    pub head: http::response::Parts,
    pub body: String,
}

const RESET_PREFIX: &str = "upstream connect error or disconnect/reset before headers. ";

impl Failure {
    /// The flags this failure raises.
    pub fn flags(&self) -> ResponseFlags {
        match self {
            Self::NoRoute => ResponseFlag::NoRouteFound.into(),
            Self::NoHealthyUpstream => ResponseFlag::NoHealthyUpstream.into(),
            Self::UpstreamOverflow { .. } => ResponseFlag::UpstreamOverflow.into(),
            Self::ConnectFailure { .. } => ResponseFlag::UpstreamConnectionFailure.into(),
            Self::UpstreamReset { reason, .. } => reason.flag().into(),
            Self::RouteTimeout | Self::PerTryTimeout => ResponseFlag::UpstreamRequestTimeout.into(),
            Self::RetryLimitExceeded { .. } => ResponseFlag::UpstreamRetryLimitExceeded.into(),
            Self::FaultAbort(_) => ResponseFlag::FaultInjected.into(),
            Self::AccessDenied => ResponseFlags::NONE,
            Self::BadRequest => ResponseFlag::DownstreamProtocolError.into(),
        }
    }

    /// The HTTP status the client sees (for a gRPC request, before it becomes 200).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::UpstreamReset { reason: ResetReason::ProtocolError, .. } => StatusCode::BAD_GATEWAY,
            Self::NoHealthyUpstream
            | Self::UpstreamOverflow { .. }
            | Self::ConnectFailure { .. }
            | Self::UpstreamReset { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RouteTimeout | Self::PerTryTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::RetryLimitExceeded { last_status } => *last_status,
            Self::FaultAbort(Abort::Http(status)) => *status,
            // Envoy's fault filter sends 200 with the gRPC status.
            Self::FaultAbort(Abort::Grpc(_)) => StatusCode::OK,
            Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// Envoy's local-reply text; `None` when the upstream's response is passed on instead.
    pub fn body(&self) -> Option<String> {
        let reset = |reason: &str, retried: bool| {
            let retried = if retried { "retried and the latest " } else { "" };
            format!("{RESET_PREFIX}{retried}reset reason: {reason}")
        };
        let text = match self {
            Self::NoRoute => String::new(),
            Self::NoHealthyUpstream => "no healthy upstream".to_owned(),
            Self::UpstreamOverflow { retried } => reset("overflow", *retried),
            Self::ConnectFailure { cause, retried } => reset(cause.reason(), *retried),
            Self::UpstreamReset { reason, retried } => reset(reason.reason(), *retried),
            Self::RouteTimeout | Self::PerTryTimeout => "upstream request timeout".to_owned(),
            Self::RetryLimitExceeded { .. } => return None,
            Self::FaultAbort(_) => "fault filter abort".to_owned(),
            Self::AccessDenied => "RBAC: access denied".to_owned(),
            Self::BadRequest => "Bad Request".to_owned(),
        };
        Some(text)
    }

    /// The response to send for a request of `kind`; `None` when the upstream's response is
    /// passed on instead ([`Failure::RetryLimitExceeded`]).
    pub fn reply(&self, kind: RequestKind) -> Option<LocalReply> {
        let text = self.body()?;
        let (mut head, ()) = http::Response::new(()).into_parts();
        let body = match kind {
            RequestKind::Grpc => {
                let status = match self {
                    Self::FaultAbort(Abort::Grpc(status)) => *status,
                    _ => GrpcStatus::from_http(self.status()),
                };
                grpc_headers(&mut head.headers, status, &text);
                String::new()
            }
            RequestKind::Http | RequestKind::Head => {
                head.status = self.status();
                if !text.is_empty() {
                    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
                }
                if kind == RequestKind::Head { String::new() } else { text }
            }
        };
        Some(LocalReply { head, body })
    }
}

/// A trailers-only gRPC response: HTTP 200 (already set), status and message in the headers.
fn grpc_headers(headers: &mut HeaderMap, status: GrpcStatus, message: &str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(status.code()));
    if !message.is_empty() {
        // Percent-encoding leaves only visible ASCII, which is always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&grpc::percent_encode(message)) {
            headers.insert("grpc-message", value);
        }
    }
}

impl ConnectFailure {
    /// Envoy's reset reason text.
    fn reason(self) -> &'static str {
        match self {
            Self::Remote => "remote connection failure",
            Self::Timeout => "connection timeout",
            Self::Local => "local connection failure",
        }
    }
}

impl ResetReason {
    /// Envoy's reset reason text.
    fn reason(self) -> &'static str {
        match self {
            Self::Remote => "remote reset",
            Self::RefusedStream => "remote refused stream reset",
            Self::ConnectionTermination => "connection termination",
            Self::ProtocolError => "protocol error",
        }
    }

    fn flag(self) -> ResponseFlag {
        match self {
            Self::Remote | Self::RefusedStream => ResponseFlag::UpstreamRemoteReset,
            Self::ConnectionTermination => ResponseFlag::UpstreamConnectionTermination,
            Self::ProtocolError => ResponseFlag::UpstreamProtocolError,
        }
    }
}
