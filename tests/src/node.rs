//! A node: its network namespace, cgroups, directories and node proxy.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::{Arc, Mutex},
    time::Duration,
};

use ambit_common::{netns::Netns, pod_api::PodApiClient};
use anyhow::Context;
use serde_json::Value;

use crate::{
    app::{self, App, AppOutput},
    config,
    daemon::Daemon,
    process::Place,
    run::Run,
};

/// The node proxy's admin address inside the node namespace.
pub const ADMIN_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
/// How long `start_proxy` waits for `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of each node proxy log printed when a test panics.
pub const LOG_TAIL_LINES: usize = 60;

/// Where a node proxy gets enrollment decisions from.
#[derive(Clone, Debug)]
pub enum ProxySource {
    /// Standalone: the run's namespaces file.
    NamespacesFile(PathBuf),
    /// The run's control plane, at this gRPC URL (TLS, verified with `ca_root`).
    ControlPlane { endpoint: String, ca_root: PathBuf },
}

pub struct Node {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) run: Arc<Run>,
    pub(crate) netns: Netns,
    pub(crate) netns_name: String,
    pub(crate) uplink_ip: Ipv4Addr,
    /// `<run dir>/<node>`.
    pub(crate) dir: PathBuf,
    /// `<cgroup root>/<node>`.
    pub(crate) cgroup: PathBuf,
    /// Where the node proxy gets enrollment decisions.
    pub(crate) source: ProxySource,
    /// Flags added to every start of the node proxy (`ClusterBuilder::proxy_args`).
    pub(crate) extra_args: Vec<String>,
    pub(crate) proxy: Daemon,
    /// Pods created on this node so far (the next pod's index).
    pub(crate) pods_created: Mutex<usize>,
}

impl Node {
    pub fn index(&self) -> usize {
        self.index
    }

    /// `node-<index>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The `ip netns` name of the node's namespace.
    pub fn netns_name(&self) -> &str {
        &self.netns_name
    }

    /// `172.30.0.<index+1>`.
    pub fn uplink_ip(&self) -> Ipv4Addr {
        self.uplink_ip
    }

    /// `10.<index+1>.0.0/24`.
    pub fn pod_cidr(&self) -> String {
        crate::topology::pod_cidr(self.index)
    }

    /// The capture root: every pod cgroup of the node is inside it.
    pub fn capture_root(&self) -> PathBuf {
        self.cgroup.join("pods")
    }

    pub fn proxy_cgroup(&self) -> PathBuf {
        self.cgroup.join("proxy")
    }

    /// Cgroup for node-level processes (outside the capture root).
    pub fn host_cgroup(&self) -> PathBuf {
        self.cgroup.join("host")
    }

    pub fn bpffs(&self) -> PathBuf {
        self.dir.join("bpffs")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The node's bootstrap token for the CA (control-plane clusters).
    pub fn ca_token_file(&self) -> PathBuf {
        self.dir.join("ca-token")
    }

    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("node-proxy.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node-proxy.log")
    }

    /// A pod-event API client for this node's proxy.
    pub fn pod_api(&self) -> PodApiClient {
        PodApiClient::new(self.api_socket()).with_timeout(Duration::from_secs(20))
    }

    /// The node proxy's PID while it runs.
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy.pid()
    }

    pub fn proxy_running(&self) -> bool {
        self.proxy_pid().is_some()
    }

    /// Starts the node proxy in the node namespace and its `proxy` cgroup and waits for `/ready`.
    pub fn start_proxy(&self) -> anyhow::Result<()> {
        self.spawn_proxy()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Starts the node proxy without waiting for it to be ready (see [`Node::wait_ready`]).
    pub fn spawn_proxy(&self) -> anyhow::Result<()> {
        let binary = config::node_proxy()?;
        for dir in [self.state_dir(), self.bpffs()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        self.run.add_mount(&self.bpffs())?;
        self.proxy.spawn(&binary, &self.proxy_args())
    }

    fn proxy_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let mut args = vec![
            "--node-name".into(),
            self.name.clone(),
            "--cgroup-root".into(),
            path(&self.capture_root()),
            "--bpffs".into(),
            path(&self.bpffs()),
            "--state-dir".into(),
            path(&self.state_dir()),
            "--api-socket".into(),
            path(&self.api_socket()),
            "--admin-addr".into(),
            ADMIN_ADDR.to_string(),
        ];
        match &self.source {
            ProxySource::NamespacesFile(file) => args.extend(["--namespaces-file".into(), path(file)]),
            ProxySource::ControlPlane { endpoint, ca_root } => args.extend([
                "--control-plane".into(),
                endpoint.clone(),
                "--ca-root".into(),
                path(ca_root),
                "--ca-token-file".into(),
                path(&self.ca_token_file()),
            ]),
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Polls `/ready` until it answers 200; fails early if the node proxy exits.
    pub fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.proxy.wait_ready(timeout)
    }

    /// SIGKILLs the node proxy and reaps it; its exit status, or None if none was started.
    pub fn kill_proxy(&self) -> Option<ExitStatus> {
        self.proxy.kill()
    }

    /// The whole node proxy log (every start of it on this node).
    pub fn proxy_log(&self) -> String {
        self.proxy.log()
    }

    /// The last `lines` lines of the node proxy log.
    pub fn proxy_log_tail(&self, lines: usize) -> String {
        self.proxy.log_tail(lines)
    }

    pub(crate) fn log_tail_block(&self, lines: usize) -> String {
        self.proxy.log_tail_block(lines)
    }

    /// `GET path` on the admin API; the status and raw body.
    pub fn admin_get_raw(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.proxy.admin_get_raw(path)
    }

    /// `GET path` on the admin API as JSON; a non-2xx status is an error carrying the body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        self.proxy.admin_get(path)
    }

    fn place(&self) -> (PathBuf, &Netns) {
        (self.host_cgroup(), &self.netns)
    }

    /// Starts `ambit-testapp` in the node namespace (like a kubelet probe: outside the capture root).
    pub fn spawn_app(&self, args: &[&str]) -> anyhow::Result<App> {
        let (cgroup, netns) = self.place();
        app::spawn(&self.run, Place { netns, cgroup: &cgroup }, &self.name, args)
    }

    /// Runs `ambit-testapp` in the node namespace to completion; non-zero exit is an error.
    pub fn run_app(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let (cgroup, netns) = self.place();
        app::run_ok(&self.run, Place { netns, cgroup: &cgroup }, &self.name, args)
    }

    /// Runs `ambit-testapp` in the node namespace to completion, whatever its exit status.
    pub fn run_app_output(&self, args: &[&str], timeout: Duration) -> anyhow::Result<AppOutput> {
        let (cgroup, netns) = self.place();
        app::run_output(&self.run, Place { netns, cgroup: &cgroup }, &self.name, args, timeout)
    }
}
