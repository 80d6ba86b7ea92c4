//! The run's control plane: a `control-plane` process in the fabric namespace, reading a config
//! directory (`<run dir>/config`) that holds what a Kubernetes API server would: the Namespaces,
//! one Pod object per pod the harness creates, and whatever Istio YAML a test writes. Node
//! proxies subscribe to it at [`GRPC_ADDR`].

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::Arc,
    time::Duration,
};

use ambit_common::{netns::Netns, pod_api::PodSpec};
use anyhow::Context;
use serde_json::Value;

use crate::{config, daemon::Daemon, manifest::write_atomic, run::Run};

/// The control plane's address on the fabric bridge.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 254);
pub const GRPC_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(ADDRESS), 15010);
/// Its admin API, inside the fabric namespace.
pub const ADMIN_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15014);
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct ControlPlane {
    daemon: Daemon,
    config_dir: PathBuf,
}

impl ControlPlane {
    pub(crate) fn new(run: &Arc<Run>, fabric: &Netns) -> anyhow::Result<Self> {
        let cgroup = run.create_cgroup("control-plane")?;
        let config_dir = run.dir().join("config");
        std::fs::create_dir_all(config_dir.join("pods")).context("creating the config directory")?;
        let log = run.dir().join("control-plane.log");
        let daemon = Daemon::new("control-plane".into(), run.clone(), fabric, cgroup, log, ADMIN_ADDR)?;
        Ok(Self { daemon, config_dir })
    }

    /// `http://172.30.0.254:15010`, what node proxies are given.
    pub fn endpoint() -> String {
        format!("http://{GRPC_ADDR}")
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Starts the control plane and waits for `/ready`.
    pub fn start(&self) -> anyhow::Result<()> {
        let binary = config::binary("control-plane")?;
        let args = [
            "--config-dir".to_owned(),
            self.config_dir.display().to_string(),
            "--grpc-addr".to_owned(),
            GRPC_ADDR.to_string(),
            "--admin-addr".to_owned(),
            ADMIN_ADDR.to_string(),
        ];
        self.daemon.spawn(&binary, &args)?;
        self.daemon.wait_ready(READY_TIMEOUT)
    }

    pub fn kill(&self) -> Option<ExitStatus> {
        self.daemon.kill()
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub(crate) fn log_tail_block(&self, lines: usize) -> String {
        self.daemon.log_tail_block(lines)
    }

    pub fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        self.daemon.admin_get(path)
    }

    pub fn admin_get_raw(&self, path: &str) -> anyhow::Result<(u16, String)> {
        self.daemon.admin_get_raw(path)
    }

    /// Writes (atomically) a file of YAML into the config directory; `name` may contain `/`.
    pub fn write_config(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        let path = self.config_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_atomic(&path, yaml.as_bytes())
    }

    pub fn remove_config(&self, name: &str) -> anyhow::Result<()> {
        let path = self.config_dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }

    pub(crate) fn write_pod(&self, pod: &PodSpec) -> anyhow::Result<()> {
        self.write_config(&pod_file(pod), &render_pod(pod))
    }

    pub(crate) fn remove_pod(&self, pod: &PodSpec) -> anyhow::Result<()> {
        self.remove_config(&pod_file(pod))
    }
}

fn pod_file(pod: &PodSpec) -> String {
    format!("pods/{}.{}.yaml", pod.namespace, pod.name)
}

/// The Pod object an API server would hold for a running pod (JSON is valid YAML).
fn render_pod(pod: &PodSpec) -> String {
    let ips: Vec<String> = pod.ips.iter().map(ToString::to_string).collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "labels": pod.labels },
        "spec": { "nodeName": pod.node, "serviceAccountName": pod.service_account, "containers": [] },
        "status": {
            "phase": "Running",
            "podIP": ips.first(),
            "podIPs": ips.iter().map(|ip| serde_json::json!({ "ip": ip })).collect::<Vec<_>>(),
        },
    })
    .to_string()
}
