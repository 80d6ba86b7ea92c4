//! Validated VirtualService.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ExportTo, IpBlock, Labels, ObjectMeta, Percent, StringMatch, ValueMatch};
use crate::config::{duration::Duration, pattern::Pattern};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VirtualService {
    pub meta: ObjectMeta,
    pub hosts: Vec<String>,
    /// As written; empty means the mesh (`mesh`), which is what Ambit serves.
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    pub tcp: Vec<TcpRoute>,
    pub export_to: ExportTo,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRoute {
    pub name: Option<String>,
    /// Any one matching is enough; empty matches everything.
    pub matches: Vec<HttpMatch>,
    pub action: RouteAction,
    pub rewrite: Option<Rewrite>,
    /// `Some(0s)` disables the timeout, as in Istio.
    pub timeout: Option<Duration>,
    pub retries: Option<Retry>,
    pub fault: Option<Fault>,
    /// `mirror` (with `mirrorPercentage`/`mirrorPercent`) and `mirrors`, in that order.
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
    pub headers: HeaderManipulation,
}

/// What a route does with a matching request: exactly one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteAction {
    /// Weighted destinations; weights sum to 100.
    Route(Vec<HttpRouteDestination>),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpMatch {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, ValueMatch>,
    pub without_headers: BTreeMap<String, ValueMatch>,
    pub query_params: BTreeMap<String, ValueMatch>,
    pub ignore_uri_case: bool,
    pub port: Option<u16>,
    pub source_labels: Labels,
    pub source_namespace: Option<String>,
    pub gateways: Vec<String>,
    pub stat_prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Destination {
    /// As written: a short name (`reviews`) is relative to the VirtualService's namespace;
    /// see [`crate::config::hosts`].
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HttpRouteDestination {
    pub destination: Destination,
    /// 0–100; a lone destination gets 100.
    pub weight: u32,
    pub headers: HeaderManipulation,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HeaderManipulation {
    pub request: HeaderOperations,
    pub response: HeaderOperations,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<RedirectPort>,
    pub scheme: Option<String>,
    /// 3xx; 301 when unset.
    pub code: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RedirectPort {
    Number(u16),
    FromProtocolDefault,
    FromRequestPort,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DirectResponse {
    pub status: u16,
    pub body: Option<Body>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Body {
    String(String),
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Rewrite {
    pub uri: Option<UriRewrite>,
    pub authority: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UriRewrite {
    /// Replaces the matched prefix (or the whole path for exact/regex matches).
    Prefix(String),
    Regex {
        pattern: Pattern,
        rewrite: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Retry {
    /// 0 disables retries.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: Vec<RetryOn>,
    pub retry_remote_localities: Option<bool>,
    pub retry_ignore_previous_hosts: Option<bool>,
    pub backoff: Option<Duration>,
}

/// Envoy's `x-envoy-retry-on` / `x-envoy-retry-grpc-on` policies, or a status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RetryOn {
    #[serde(rename = "5xx")]
    FiveXx,
    #[serde(rename = "gateway-error")]
    GatewayError,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "reset-before-request")]
    ResetBeforeRequest,
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    #[serde(rename = "envoy-ratelimited")]
    EnvoyRateLimited,
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    #[serde(rename = "refused-stream")]
    RefusedStream,
    #[serde(rename = "retriable-status-codes")]
    RetriableStatusCodes,
    #[serde(rename = "retriable-headers")]
    RetriableHeaders,
    #[serde(rename = "http3-post-connect-failure")]
    Http3PostConnectFailure,
    #[serde(rename = "cancelled")]
    Cancelled,
    #[serde(rename = "deadline-exceeded")]
    DeadlineExceeded,
    #[serde(rename = "internal")]
    Internal,
    #[serde(rename = "resource-exhausted")]
    ResourceExhausted,
    #[serde(rename = "unavailable")]
    Unavailable,
    /// A plain HTTP status code (100–599): retry on exactly that status.
    #[serde(rename = "status")]
    Status(u16),
}

impl RetryOn {
    pub(crate) const NAMED: [(&'static str, RetryOn); 16] = [
        ("5xx", RetryOn::FiveXx),
        ("gateway-error", RetryOn::GatewayError),
        ("reset", RetryOn::Reset),
        ("reset-before-request", RetryOn::ResetBeforeRequest),
        ("connect-failure", RetryOn::ConnectFailure),
        ("envoy-ratelimited", RetryOn::EnvoyRateLimited),
        ("retriable-4xx", RetryOn::Retriable4xx),
        ("refused-stream", RetryOn::RefusedStream),
        ("retriable-status-codes", RetryOn::RetriableStatusCodes),
        ("retriable-headers", RetryOn::RetriableHeaders),
        ("http3-post-connect-failure", RetryOn::Http3PostConnectFailure),
        ("cancelled", RetryOn::Cancelled),
        ("deadline-exceeded", RetryOn::DeadlineExceeded),
        ("internal", RetryOn::Internal),
        ("resource-exhausted", RetryOn::ResourceExhausted),
        ("unavailable", RetryOn::Unavailable),
    ];
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Fault {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Delay {
    pub fixed_delay: Duration,
    /// Unset means no request is delayed (Istio's documented default).
    pub percentage: Percent,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Abort {
    pub error: AbortError,
    /// Unset means no request is aborted (Istio's documented default).
    pub percentage: Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AbortError {
    HttpStatus(u16),
    GrpcStatus(GrpcStatus),
}

/// gRPC status codes by their canonical names (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrpcStatus {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl GrpcStatus {
    pub(crate) const ALL: [(&'static str, GrpcStatus); 17] = [
        ("OK", GrpcStatus::Ok),
        ("CANCELLED", GrpcStatus::Cancelled),
        ("UNKNOWN", GrpcStatus::Unknown),
        ("INVALID_ARGUMENT", GrpcStatus::InvalidArgument),
        ("DEADLINE_EXCEEDED", GrpcStatus::DeadlineExceeded),
        ("NOT_FOUND", GrpcStatus::NotFound),
        ("ALREADY_EXISTS", GrpcStatus::AlreadyExists),
        ("PERMISSION_DENIED", GrpcStatus::PermissionDenied),
        ("RESOURCE_EXHAUSTED", GrpcStatus::ResourceExhausted),
        ("FAILED_PRECONDITION", GrpcStatus::FailedPrecondition),
        ("ABORTED", GrpcStatus::Aborted),
        ("OUT_OF_RANGE", GrpcStatus::OutOfRange),
        ("UNIMPLEMENTED", GrpcStatus::Unimplemented),
        ("INTERNAL", GrpcStatus::Internal),
        ("UNAVAILABLE", GrpcStatus::Unavailable),
        ("DATA_LOSS", GrpcStatus::DataLoss),
        ("UNAUTHENTICATED", GrpcStatus::Unauthenticated),
    ];

    /// The numeric code.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|(_, s)| *s == self).and_then(|i| u8::try_from(i).ok()).unwrap_or(2)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Mirror {
    pub destination: Destination,
    /// 100 when unset.
    pub percentage: Percent,
    /// Written as the single `mirror` field rather than an entry of `mirrors`; kept so that
    /// errors can point at the field the user wrote.
    #[serde(skip)]
    pub(crate) from_mirror_field: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Cors {
    /// `allowOrigins`, or the deprecated `allowOrigin` as exact matches (`*` as any).
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
    pub unmatched_preflights: UnmatchedPreflights,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UnmatchedPreflights {
    /// Istio's default: forward preflights that match no origin to the upstream.
    Forward,
    Ignore,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TcpRoute {
    pub matches: Vec<L4Match>,
    pub route: Vec<RouteDestination>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct L4Match {
    pub destination_subnets: Vec<IpBlock>,
    pub port: Option<u16>,
    pub source_labels: Labels,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}
