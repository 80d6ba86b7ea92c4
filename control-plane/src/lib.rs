//! Ambit's control plane (istiod's job): reads Istio and Kubernetes config from a directory or a
//! Kubernetes API server ([`source`]), validates it and keeps the last good version of every
//! object ([`pipeline`], `ambit_common::config`), compiles it per proxy ([`compile`]) and pushes it
//! over gRPC ([`push`]); its certificate authority ([`ca`]) signs workload certificates, served on
//! the same TLS port ([`grpc`]). The `control-plane` binary is a thin `main` around this library, which
//! the benchmark and tests use directly.

pub mod admin;
pub mod app;
pub mod ca;
pub mod compile;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod pipeline;
pub mod push;
pub mod source;
