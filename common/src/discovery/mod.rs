//! The proxy side of the Discovery API: a subscriber that keeps one stream to the control plane,
//! applies the updates it receives to a [`ResourceSet`], ACKs or NACKs each, reconnects with
//! backoff and jitter, and keeps serving its last good configuration while the control plane is
//! away. Node proxies and waypoints both use it.

pub mod backoff;
pub mod client;
pub mod state;

pub use client::{ConnectionStatus, SubscriberConfig, subscribe};
pub use state::{ResourceKey, ResourceSet, UpdateError};
