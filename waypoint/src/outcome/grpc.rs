//! gRPC status codes, and what Envoy puts in `grpc-status` and `grpc-message` when it answers a
//! gRPC request itself.

use http::{HeaderMap, StatusCode};

/// A gRPC status code (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcStatus {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcStatus {
    /// In code order, so `ALL[code]` is the status with that code.
    pub const ALL: [Self; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    pub fn code(self) -> u32 {
        self as u32
    }

    /// `None` for a code gRPC does not define.
    pub fn from_code(code: u32) -> Option<Self> {
        usize::try_from(code).ok().and_then(|i| Self::ALL.get(i).copied())
    }

    /// The `grpc-status` header of a response (or trailers); `None` when absent or not a code
    /// gRPC defines (Envoy then treats it as an invalid code, which matches no retry condition).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get("grpc-status")?.to_str().ok()?;
        value.parse().ok().and_then(Self::from_code)
    }

    /// The status Envoy answers a gRPC request with in place of an HTTP status
    /// (`Grpc::Utility::httpToGrpcStatus`, after
    /// <https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>).
    pub fn from_http(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => Self::Internal,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::Unimplemented,
            429 | 502 | 503 | 504 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }
}

/// `grpc-message` encoding: bytes outside printable ASCII and `%` become `%XX`
/// (<https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md#responses>). Like Envoy's
/// `PercentEncoding::encode`, `~` is encoded too.
pub(super) fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &byte in message.as_bytes() {
        if !(b' '..b'~').contains(&byte) || byte == b'%' {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}
