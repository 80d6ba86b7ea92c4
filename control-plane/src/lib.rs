//! Ambit's control plane (istiod's job): reads Istio and Kubernetes config from a directory or a
//! Kubernetes API server, validates it (`ambit_common::config`), compiles it per proxy
//! ([`compile`]) and pushes it over gRPC ([`push`]). The `control-plane` binary is a thin `main`
//! around this library, which the benchmark and tests use directly.

pub mod compile;
pub mod source;
