//! Code the Ambit binaries share. Nothing here does network IO except the small blocking
//! pod-event API client, which the CNI plugin and the test harness use.

pub mod api;
pub mod cni;
pub mod config;
pub mod discovery;
pub mod enrollment;
pub mod errors;
pub mod hbone;
pub mod http_server;
pub mod identity;
pub mod labels;
pub mod logging;
pub mod names;
pub mod namespaces;
pub mod netns;
pub mod pod_api;
pub mod relay;
pub mod workers;
