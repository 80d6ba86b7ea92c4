//! The one gRPC method the app serves and calls, `ambit.test.Echo/Call`. The messages are
//! written by hand with prost's derive (no `.proto`, no build-time codegen); as a `.proto`:
//!
//! ```proto
//! package ambit.test;
//! service Echo { rpc Call(EchoRequest) returns (EchoReply); }
//! message EchoRequest { string message = 1; int32 fail_with_code = 2; uint32 delay_ms = 3; }
//! message EchoReply {
//!   string served_by = 1; string message = 2; map<string, string> metadata = 3; string authority = 4;
//! }
//! ```

pub(super) mod server;

use std::collections::HashMap;

/// The method's HTTP/2 path.
pub(super) const CALL_PATH: &str = "/ambit.test.Echo/Call";

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct EchoRequest {
    #[prost(string, tag = "1")]
    pub(super) message: String,
    /// Answer with this gRPC status code instead of OK (0).
    #[prost(int32, tag = "2")]
    pub(super) fail_with_code: i32,
    /// Wait this long before answering (0: the `x-httpapp-delay-ms` metadata, if any).
    #[prost(uint32, tag = "3")]
    pub(super) delay_ms: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct EchoReply {
    #[prost(string, tag = "1")]
    pub(super) served_by: String,
    #[prost(string, tag = "2")]
    pub(super) message: String,
    /// The request's metadata (its HTTP/2 headers), repeated values joined by ",".
    #[prost(map = "string, string", tag = "3")]
    pub(super) metadata: HashMap<String, String>,
    /// The `:authority` the server saw.
    #[prost(string, tag = "4")]
    pub(super) authority: String,
}
