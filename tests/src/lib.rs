//! Ambit's local cluster harness: nodes and pods as network namespaces joined by veth pairs, each
//! pod in its own cgroup v2, each node with its own node proxy — for the e2e tests and the demo.
//!
//! ```no_run
//! use ambit_e2e::{Cluster, PodOptions};
//! let cluster = Cluster::builder()
//!     .nodes(2)
//!     .namespace("mesh", &[("istio.io/dataplane-mode", "ambient")])
//!     .build()?;
//! let a = cluster.add_pod(PodOptions::new("a", "mesh").node(0))?;
//! let b = cluster.add_pod(PodOptions::new("b", "mesh").node(1))?;
//! let _server = b.spawn_app(&["serve", "--listen", "0.0.0.0:8080"])?;
//! let to = format!("{}:8080", b.ip());
//! a.run_app(&["connect", "--to", &to, "--send", "1000"])?;
//! # anyhow::Ok(())
//! ```
//!
//! Every resource a run creates is named with its run id and recorded in
//! `/run/ambit-harness/<run id>/manifest.json` before it is created; dropping the [`Cluster`]
//! removes exactly those (also during a panic), and building a cluster sweeps runs whose owner
//! process died. The crate also holds `ambit-testapp` ([`testapp`]) and `ambit-httpapp` ([`httpapp`]), and the
//! waypoint benchmark's driver ([`waypoint_bench`]).

pub mod app;
pub mod cgroup;
pub mod cleanup;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod control_plane;
mod daemon;
pub mod hbone_client;
pub mod http;
pub mod httpapp;
pub mod manifest;
pub mod namespaces;
pub mod node;
pub mod ns;
pub mod packet_capture;
pub mod pod;
pub mod privilege;
pub mod process;
pub mod procs;
pub mod run;
pub mod service;
pub mod sweep;
pub mod testapp;
pub mod tool;
pub mod topology;
pub mod waypoint;
pub mod waypoint_bench;

pub use app::{App, AppOutput};
pub use cluster::{Cluster, ClusterBuilder};
pub use control_plane::ControlPlane;
pub use node::{Node, ProxySource};
pub use pod::{Pod, PodOptions};
pub use privilege::require_root;
pub use process::{ChildGuard, Place, Spawned};
pub use run::{Run, RunGuard};
pub use service::ServiceSpec;
pub use sweep::{SweepReport, sweep_stale_runs};
pub use waypoint::{Waypoint, WaypointOptions};
