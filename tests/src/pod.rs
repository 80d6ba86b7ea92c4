//! Pods: a network namespace wired to its node, a cgroup under the node's capture root, and the
//! pod event the CNI plugin would send to the node proxy.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ambit_common::{netns::Netns, pod_api::PodSpec};
use anyhow::{Context, bail};
use serde_json::Value;

use crate::{
    app::{self, App, AppOutput},
    cgroup,
    process::{ChildGuard, Place, Spawned},
    run::Run,
};

/// What to create: `PodOptions::new("a", "mesh").node(0).labels(&[("app", "a")])`.
#[derive(Clone, Debug)]
pub struct PodOptions {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) node: usize,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) service_account: String,
    pub(crate) announce: bool,
}

impl PodOptions {
    pub fn new(name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            node: 0,
            labels: BTreeMap::new(),
            service_account: "default".to_owned(),
            announce: true,
        }
    }

    /// The node (0-based) the pod runs on; default 0.
    pub fn node(mut self, index: usize) -> Self {
        self.node = index;
        self
    }

    /// Adds labels.
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels.extend(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// The pod's service account; default `default`.
    pub fn service_account(mut self, name: &str) -> Self {
        self.service_account = name.to_owned();
        self
    }

    /// Whether to announce the pod to its node proxy (default true; then adding fails if the node
    /// proxy is not running).
    pub fn announce(mut self, announce: bool) -> Self {
        self.announce = announce;
        self
    }
}

pub struct Pod {
    pub(crate) run: Arc<Run>,
    pub(crate) spec: PodSpec,
    pub(crate) node_index: usize,
    pub(crate) node_netns_name: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: Netns,
    pub(crate) netns_name: String,
    pub(crate) cgroup: PathBuf,
    /// The node-side veth.
    pub(crate) veth: String,
    pub(crate) announced: bool,
    pub(crate) removed: AtomicBool,
    pub(crate) log_path: PathBuf,
}

impl Pod {
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn namespace(&self) -> &str {
        &self.spec.namespace
    }

    pub fn uid(&self) -> &str {
        &self.spec.uid
    }

    /// `/run/netns/<name>`.
    pub fn netns_path(&self) -> &Path {
        &self.spec.netns
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup
    }

    pub fn node_index(&self) -> usize {
        self.node_index
    }

    pub fn node_name(&self) -> &str {
        &self.spec.node
    }

    /// The pod event sent (or that would have been sent) to the node proxy.
    pub fn spec(&self) -> &PodSpec {
        &self.spec
    }

    /// Whether the pod was announced to its node proxy.
    pub fn announced(&self) -> bool {
        self.announced
    }

    /// Where [`Pod::spawn`] sends its processes' stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn label(&self) -> String {
        format!("pod {}/{}", self.spec.namespace, self.spec.name)
    }

    fn place(&self) -> anyhow::Result<Place<'_>> {
        if self.removed.load(Ordering::Acquire) {
            bail!("{} was removed", self.label());
        }
        Ok(Place { netns: &self.netns, cgroup: &self.cgroup })
    }

    /// Starts `ambit-testapp args…` in the pod; for `serve`, returns once it is listening.
    pub fn spawn_app(&self, args: &[&str]) -> anyhow::Result<App> {
        app::spawn(&self.run, self.place()?, &self.label(), args)
    }

    /// Runs `ambit-testapp args…` in the pod to completion; its events, or an error (with the
    /// events and stderr) if it exits non-zero.
    pub fn run_app(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        app::run_ok(&self.run, self.place()?, &self.label(), args)
    }

    /// Runs `ambit-testapp args…` to completion (bounded by `timeout`), whatever its exit status.
    pub fn run_app_output(&self, args: &[&str], timeout: Duration) -> anyhow::Result<AppOutput> {
        app::run_output(&self.run, self.place()?, &self.label(), args, timeout)
    }

    /// Starts `ambit-httpapp args…` in the pod; for `serve`, returns once it is listening.
    pub fn spawn_httpapp(&self, args: &[&str]) -> anyhow::Result<App> {
        app::spawn_program(&self.run, self.place()?, &self.label(), app::HTTPAPP, args)
    }

    /// Runs `ambit-httpapp args…` (a `load`) in the pod to completion; its events (the last is
    /// the `summary`), or an error (with the events and stderr) if it exits non-zero.
    pub fn run_httpapp(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        app::run_program_ok(&self.run, self.place()?, &self.label(), app::HTTPAPP, args, app::HTTPAPP_RUN_TIMEOUT)
    }

    /// Starts any program in the pod; stdout and stderr go to [`Pod::log_path`].
    pub fn spawn(&self, program: impl AsRef<Path>, args: &[&str]) -> anyhow::Result<ChildGuard> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log_path).context("opening the pod log")?;
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        Ok(self.spawn_command(cmd)?.guard)
    }

    /// Starts a fully configured command in the pod (set up pipes on it as needed).
    pub fn spawn_command(&self, cmd: Command) -> anyhow::Result<Spawned> {
        self.run.spawn_in(cmd, self.place()?)
    }

    /// Tears the pod down locally: processes, veth (and route), namespace, cgroup. Continues past
    /// errors and returns the first.
    pub(crate) fn teardown(&self) -> anyhow::Result<()> {
        self.removed.store(true, Ordering::Release);
        for pid in cgroup::procs(&self.cgroup) {
            self.run.kill(pid);
        }
        let results = [
            crate::topology::unwire_pod(&self.node_netns_name, &self.veth),
            self.run.delete_netns(&self.netns_name),
            self.run.remove_cgroup(&self.cgroup),
        ];
        results.into_iter().collect::<anyhow::Result<Vec<()>>>().map(drop)
    }
}
