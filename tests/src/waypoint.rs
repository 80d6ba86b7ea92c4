//! A waypoint in the local cluster, deployed the way Istio deploys one for
//! `istioctl waypoint apply`: a Gateway of class `istio-waypoint` in the control plane's
//! configuration, and a pod labelled `gateway.networking.k8s.io/gateway-name: <name>` (and
//! `istio.io/dataplane-mode: none`: a waypoint speaks HBONE itself and is never captured) running
//! the `waypoint` binary. It proves who it is to the control plane with a
//! `waypoint/<ns>/<name>` credential, as in local mode.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use serde_json::Value;

use crate::{Cluster, Pod, PodOptions, config, control_plane::ControlPlane, daemon::Daemon};

/// The waypoint's admin API, inside its pod.
pub const ADMIN_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15020);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What to deploy.
#[derive(Clone, Debug)]
pub struct WaypointOptions {
    namespace: String,
    name: String,
    node: usize,
    service_account: String,
    /// The Gateway's `istio.io/waypoint-for` label; `None`: unset (Istio's default, `service`).
    waypoint_for: Option<String>,
}

impl WaypointOptions {
    /// The waypoint `name` in `namespace`, on node 0, running as service account `name`.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            node: 0,
            service_account: name.to_owned(),
            waypoint_for: None,
        }
    }

    pub fn node(mut self, index: usize) -> Self {
        self.node = index;
        self
    }

    pub fn service_account(mut self, name: &str) -> Self {
        self.service_account = name.to_owned();
        self
    }

    pub fn waypoint_for(mut self, traffic: &str) -> Self {
        self.waypoint_for = Some(traffic.to_owned());
        self
    }

    /// The Gateway (class `istio-waypoint`, one HBONE listener on 15008) as YAML.
    pub fn gateway_yaml(&self) -> String {
        let labels = match &self.waypoint_for {
            Some(traffic) => format!("  labels:\n    istio.io/waypoint-for: {traffic}\n"),
            None => String::new(),
        };
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {}\n  namespace: {}\n{labels}\
             spec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n",
            self.name, self.namespace
        )
    }
}

/// A running waypoint (its pod and process are removed with the cluster's run).
pub struct Waypoint {
    pod: Pod,
    daemon: Daemon,
    options: WaypointOptions,
}

impl Waypoint {
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// `<namespace>/<name>`, as workloads' and services' `waypoint` fields name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.options.namespace, self.options.name)
    }

    /// `GET path` on its admin API, as JSON.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<Value> {
        self.daemon.admin_get(path)
    }

    /// The access records of requests it has answered, after record `after` (0: all it holds).
    /// A record is stored when its response body ends, which can be just after the client has
    /// the response: this waits (bounded) until every request the waypoint counted (`/stats`)
    /// has its record.
    pub fn requests(&self, after: u64) -> anyhow::Result<Vec<Value>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let counted = self.admin_get("/stats")?["requests"].as_u64().context("/stats has no requests counter")?;
            let body = self.admin_get(&format!("/requests?after={after}"))?;
            let records = body.get("requests").unwrap_or(&body);
            let records = records
                .as_array()
                .cloned()
                .with_context(|| format!("{}: /requests is not a list: {body}", self.key()))?;
            let stored = records.last().and_then(|r| r["id"].as_u64()).unwrap_or(after);
            if stored >= counted || std::time::Instant::now() >= deadline {
                return Ok(records);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail_block(&self, lines: usize) -> String {
        self.daemon.log_tail_block(lines)
    }

    /// Everything it has written to its log (stderr) so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Kills the waypoint process (its pod stays); it can be started again with [`Self::start`].
    pub fn kill(&self) -> Option<std::process::ExitStatus> {
        self.daemon.kill()
    }

    /// Starts the waypoint process and waits until it has its configuration and certificate.
    pub fn start(&self) -> anyhow::Result<()> {
        let binary = config::binary("waypoint")?;
        let run_dir = self.pod.run.dir().to_owned();
        let args: Vec<String> = vec![
            "--control-plane".into(),
            ControlPlane::endpoint(),
            "--ca-root".into(),
            run_dir.join("control-plane/ca/ca.crt").display().to_string(),
            "--token-file".into(),
            token_file(&run_dir, &self.options).display().to_string(),
            "--namespace".into(),
            self.options.namespace.clone(),
            "--name".into(),
            self.options.name.clone(),
            "--service-account".into(),
            self.options.service_account.clone(),
            "--admin".into(),
            ADMIN_ADDR.to_string(),
            "--log".into(),
            "info,access=info".into(),
        ];
        self.daemon.spawn(&binary, &args)?;
        self.daemon.wait_ready(READY_TIMEOUT)
    }
}

fn token_file(run_dir: &std::path::Path, options: &WaypointOptions) -> std::path::PathBuf {
    run_dir.join(format!("waypoint-{}.{}.token", options.namespace, options.name))
}

impl Cluster {
    /// Deploys a waypoint: its Gateway (applied and pushed), its credential, its pod on
    /// `options.node`, and the running `waypoint` process, ready. Bind services or namespaces to
    /// it with the `istio.io/use-waypoint` label, as in Istio.
    pub fn add_waypoint(&self, options: WaypointOptions) -> anyhow::Result<Waypoint> {
        let cp = self.cp();
        let run: &Arc<crate::Run> = self.run();
        cp.add_credential(
            &format!("waypoint/{}/{}", options.namespace, options.name),
            &token_file(run.dir(), &options),
        )?;
        self.apply(
            &format!("waypoint-{}.{}.yaml", options.namespace, options.name),
            &options.gateway_yaml(),
            &[("Gateway", &options.namespace, &options.name)],
        )?;
        let pod = self.add_pod(
            PodOptions::new(&format!("{}-0", options.name), &options.namespace)
                .node(options.node)
                .service_account(&options.service_account)
                .labels(&[
                    ("gateway.networking.k8s.io/gateway-name", options.name.as_str()),
                    ("istio.io/dataplane-mode", "none"),
                ]),
        )?;
        // The pod must be known as a waypoint (never captured) before its process dials out.
        self.wait_converged()?;
        let label = format!("waypoint {}/{}", options.namespace, options.name);
        let log = run.dir().join(format!("waypoint-{}.{}.log", options.namespace, options.name));
        let daemon = Daemon::new(label, run.clone(), pod.netns(), pod.cgroup_path().to_owned(), log, ADMIN_ADDR)?;
        let waypoint = Waypoint { pod, daemon, options };
        waypoint.start()?;
        self.wait_converged()?;
        Ok(waypoint)
    }
}
