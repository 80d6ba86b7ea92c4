//! HBONE: TCP connections tunnelled as HTTP/2 CONNECT streams (`:authority` = the original
//! destination `ip:port`), normally inside mutual TLS; Istio's wire protocol on port 15008, so an
//! Istio ztunnel is a valid peer. This module is the HTTP/2 part — TLS is the caller's: it hands
//! in connected streams ([`client::Pool::open`]) or accepted ones ([`server::serve`]).
//!
//! - [`stream`]: one CONNECT stream as a [`crate::relay::Duplex`] (flow control, half-close as
//!   END_STREAM, resets as RST_STREAM with CONNECT_ERROR);
//! - [`client`]: pooled HTTP/2 connections keyed by the caller (source identity, destination
//!   identity, destination IP), a stream cap per connection, idle eviction, PING keepalive;
//! - [`server`]: accepts CONNECT streams on one connection and hands each to a handler.

pub mod client;
pub mod server;
pub mod stream;

use std::time::Duration;

pub use stream::H2Stream;

/// HTTP/2 settings for HBONE connections: large windows so one stream can fill a fast link
/// (the default 64 KiB window caps a stream at window / RTT), large frames to cut framing work.
#[derive(Clone, Debug)]
pub struct Settings {
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
    /// Streams per connection before the client opens another connection.
    pub max_streams_per_connection: usize,
    /// A pooled connection without streams for this long is closed.
    pub idle_timeout: Duration,
    /// PING interval, and how long an answer may take before the connection is dropped.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_frame_size: 256 * 1024,
            max_streams_per_connection: 100,
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    #[error("connecting: {0}")]
    Connect(#[source] std::io::Error),
    #[error("HTTP/2 handshake: {0}")]
    Handshake(#[source] h2::Error),
    #[error("the HBONE connection failed: {0}")]
    Connection(#[source] h2::Error),
    #[error("the peer refused the tunnel to {authority} with HTTP status {status}")]
    Refused { authority: String, status: u16 },
}

impl HboneError {
    /// Whether the request may be retried on a fresh connection: it failed because a pooled
    /// connection had gone stale (closed, GOAWAY), not because the peer refused it.
    pub fn stale_connection(&self) -> bool {
        matches!(self, Self::Connection(e) if e.is_go_away() || e.is_io() || e.reason() == Some(h2::Reason::REFUSED_STREAM))
    }
}

/// `h2` errors as IO errors: a reset stream reads as a reset connection.
pub(crate) fn to_io(error: h2::Error) -> std::io::Error {
    if error.is_io() {
        return error.into_io().unwrap_or_else(|| std::io::Error::other("h2 I/O error"));
    }
    let kind = if error.is_reset() {
        std::io::ErrorKind::ConnectionReset
    } else if error.is_go_away() {
        std::io::ErrorKind::ConnectionAborted
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, error)
}

#[cfg(test)]
mod tests;
