//! A local cluster: a fabric, N nodes each with its node proxy, and pods. Everything is removed
//! when the [`Cluster`] is dropped, also when a test panics (then the node proxy logs are printed).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use ambit_common::{netns::Netns, pod_api::PodSpec};
use anyhow::{Context, bail};

use crate::{
    control_plane::ControlPlane,
    namespaces::{self, Namespaces},
    node::{LOG_TAIL_LINES, Node, ProxySource},
    pod::{Pod, PodOptions},
    run::{Run, RunGuard},
    sweep::sweep_stale_runs,
    topology,
};

/// Pods per node: addresses `10.<n>.0.2` … `10.<n>.0.254`.
const MAX_PODS_PER_NODE: usize = 253;
const MAX_NODES: usize = 200;

pub struct ClusterBuilder {
    nodes: usize,
    namespaces: Namespaces,
    start_proxies: bool,
    control_plane: bool,
    cert_lifetime: Option<std::time::Duration>,
    proxy_args: Vec<String>,
}

impl ClusterBuilder {
    /// Number of nodes (default 1).
    pub fn nodes(mut self, count: usize) -> Self {
        self.nodes = count;
        self
    }

    /// Declares a namespace and its labels in the namespaces file.
    pub fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.namespaces.insert(name.to_owned(), labels);
        self
    }

    /// Run a control plane (in the fabric namespace) reading a config directory that holds the
    /// namespaces and a Pod object per pod; node proxies subscribe to it instead of reading the
    /// namespaces file (default false: standalone node proxies).
    pub fn control_plane(mut self, enabled: bool) -> Self {
        self.control_plane = enabled;
        self
    }

    /// Lifetime of workload certificates the control plane's CA issues (default: its own, 24 h).
    pub fn cert_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.cert_lifetime = Some(lifetime);
        self
    }

    /// Extra flags for every node proxy (e.g. `--same-node=hbone`).
    pub fn proxy_args(mut self, args: &[&str]) -> Self {
        self.proxy_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Whether to start a node proxy on every node (default true).
    pub fn start_proxies(mut self, start: bool) -> Self {
        self.start_proxies = start;
        self
    }

    pub fn build(self) -> anyhow::Result<Cluster> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            bail!("a cluster needs 1 to {MAX_NODES} nodes (got {})", self.nodes);
        }
        let report = sweep_stale_runs();
        if !report.swept.is_empty() || !report.errors.is_empty() {
            eprintln!("ambit harness: swept stale runs {:?}; problems: {:?}", report.swept, report.errors);
        }
        let run = Run::create()?;
        let guard = RunGuard::new(run.clone());
        run.create_cgroup("")?;
        let (_, fabric) = topology::create_fabric(&run)?;
        let fabric_name = run.netns_name("fabric");
        let control_plane = if self.control_plane {
            topology::add_fabric_address(&fabric_name, crate::control_plane::ADDRESS)?;
            Some(ControlPlane::new(&run, &fabric, self.cert_lifetime)?)
        } else {
            None
        };
        let namespaces_file = match &control_plane {
            Some(cp) => cp.config_dir().join("namespaces.yaml"),
            None => run.dir().join("namespaces.yaml"),
        };
        namespaces::write(&namespaces_file, &self.namespaces)?;
        let source = match &control_plane {
            Some(cp) => ProxySource::ControlPlane { endpoint: ControlPlane::endpoint(), ca_root: cp.ca_root() },
            None => ProxySource::NamespacesFile(namespaces_file.clone()),
        };
        let mut nodes = Vec::new();
        for index in 0..self.nodes {
            nodes.push(create_node(&run, &fabric_name, index, &source, &self.proxy_args)?);
        }
        let node_netns: Vec<String> = nodes.iter().map(|n| n.netns_name.clone()).collect();
        topology::route_between_nodes(&node_netns)?;
        if control_plane.is_some() {
            topology::route_pods_from_fabric(&fabric_name, nodes.len())?;
        }
        let cluster = Cluster {
            run,
            fabric,
            nodes,
            namespaces: Mutex::new(self.namespaces),
            namespaces_file,
            pods: Mutex::new(BTreeSet::new()),
            pods_created: Mutex::new(0),
            pod_uids: Mutex::new(Vec::new()),
            control_plane,
            _guard: guard,
        };
        if let Some(cp) = &cluster.control_plane {
            let nodes: Vec<_> = cluster.nodes.iter().map(|n| (n.name().to_owned(), n.ca_token_file())).collect();
            cp.write_credentials(&nodes)?;
            cp.start()?;
        }
        if self.start_proxies {
            for node in &cluster.nodes {
                node.spawn_proxy()?;
            }
            for node in &cluster.nodes {
                node.wait_ready(crate::node::READY_TIMEOUT)?;
            }
        }
        Ok(cluster)
    }
}

fn create_node(
    run: &Arc<Run>,
    fabric: &str,
    index: usize,
    source: &ProxySource,
    extra_args: &[String],
) -> anyhow::Result<Node> {
    let name = format!("node-{index}");
    let (netns_name, netns) = topology::create_node(run, fabric, index, &name)?;
    let cgroup = run.create_cgroup(&name)?;
    for sub in ["pods", "proxy", "host"] {
        run.create_cgroup(&format!("{name}/{sub}"))?;
    }
    let dir = run.dir().join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let proxy = crate::daemon::Daemon::new(
        format!("{name} node-proxy"),
        run.clone(),
        &netns,
        cgroup.join("proxy"),
        dir.join("node-proxy.log"),
        crate::node::ADMIN_ADDR,
    )?;
    Ok(Node {
        index,
        name,
        run: run.clone(),
        netns,
        netns_name,
        uplink_ip: topology::uplink_ip(index),
        dir,
        cgroup,
        source: source.clone(),
        extra_args: extra_args.to_vec(),
        proxy,
        pods_created: Mutex::new(0),
    })
}

pub struct Cluster {
    run: Arc<Run>,
    fabric: Netns,
    nodes: Vec<Node>,
    namespaces: Mutex<Namespaces>,
    namespaces_file: PathBuf,
    /// (namespace, name) of live pods.
    pods: Mutex<BTreeSet<(String, String)>>,
    pods_created: Mutex<usize>,
    /// Uids of live pods (for control-plane convergence checks).
    pod_uids: Mutex<Vec<String>>,
    control_plane: Option<ControlPlane>,
    // Last: dropped after the nodes (whose node proxies it would kill anyway).
    _guard: RunGuard,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Post-increment of a counter.
fn next(counter: &Mutex<usize>) -> usize {
    let mut value = lock(counter);
    *value += 1;
    *value - 1
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            nodes: 1,
            namespaces: Namespaces::new(),
            start_proxies: true,
            control_plane: false,
            cert_lifetime: None,
            proxy_args: Vec::new(),
        }
    }

    pub fn run_id(&self) -> &str {
        self.run.id()
    }

    pub fn run_dir(&self) -> &Path {
        self.run.dir()
    }

    pub fn run(&self) -> &Arc<Run> {
        &self.run
    }

    pub fn fabric_netns(&self) -> &Netns {
        &self.fabric
    }

    /// Node `index` (panics if there is no such node).
    pub fn node(&self, index: usize) -> &Node {
        self.nodes
            .get(index)
            .unwrap_or_else(|| panic!("the cluster has {} nodes; there is no node {index}", self.nodes.len()))
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The control plane, if the cluster was built with one.
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.control_plane.as_ref()
    }

    /// The control plane (panics if the cluster was built without one).
    pub fn cp(&self) -> &ControlPlane {
        self.control_plane.as_ref().expect("this cluster was built without .control_plane(true)")
    }

    /// Waits (bounded) until the control plane has read every pod the harness created, every node
    /// proxy holds its current configuration, and every node proxy holds the certificates of its
    /// enrolled pods. A no-op without a control plane.
    pub fn wait_converged(&self) -> anyhow::Result<()> {
        let Some(cp) = &self.control_plane else { return Ok(()) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let uids: Vec<String> = lock(&self.pod_uids).clone();
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            let ready = converged(cp, &uids, self.nodes.len()).and_then(|ok| {
                Ok(ok
                    && self
                        .nodes
                        .iter()
                        .map(certificates_ready)
                        .collect::<anyhow::Result<Vec<_>>>()?
                        .into_iter()
                        .all(|r| r))
            });
            match ready {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        bail!("the control plane and node proxies did not converge within 15 s {last}\n{}", cp.log_tail_block(30))
    }

    /// Writes a config file of Istio resources to the control plane and waits until it holds
    /// `objects` (`(kind, namespace, name)`) and every node proxy has the result.
    pub fn apply(&self, file: &str, yaml: &str, objects: &[(&str, &str, &str)]) -> anyhow::Result<()> {
        let cp = self.cp();
        cp.write_config(file, yaml)?;
        cp.wait_objects(objects, true)?;
        self.wait_converged()
    }

    /// Removes a config file written with [`Self::apply`] and waits until the control plane
    /// dropped `objects` and every node proxy has the result.
    pub fn unapply(&self, file: &str, objects: &[(&str, &str, &str)]) -> anyhow::Result<()> {
        let cp = self.cp();
        cp.remove_config(file)?;
        cp.wait_objects(objects, false)?;
        self.wait_converged()
    }

    /// The file the namespace labels live in: the node proxies' namespaces file, or the control
    /// plane's `namespaces.yaml`.
    pub fn namespaces_file(&self) -> &Path {
        &self.namespaces_file
    }

    /// Sets a namespace's labels (declaring it if needed) and rewrites the namespaces file atomically.
    pub fn set_namespace_labels(&self, namespace: &str, labels: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut namespaces = lock(&self.namespaces);
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        namespaces.insert(namespace.to_owned(), labels);
        namespaces::write(&self.namespaces_file, &namespaces)
    }

    /// Removes a namespace from the namespaces file.
    pub fn remove_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let mut namespaces = lock(&self.namespaces);
        namespaces.remove(namespace);
        namespaces::write(&self.namespaces_file, &namespaces)
    }

    /// Creates a pod and (unless `announce(false)`) announces it to its node proxy, as the CNI
    /// plugin would; that fails if the node proxy is not running.
    pub fn add_pod(&self, options: PodOptions) -> anyhow::Result<Pod> {
        let node = self.nodes.get(options.node).with_context(|| {
            format!(
                "pod {}/{}: no node {} (the cluster has {})",
                options.namespace,
                options.name,
                options.node,
                self.nodes.len()
            )
        })?;
        let key = (options.namespace.clone(), options.name.clone());
        if !lock(&self.pods).insert(key.clone()) {
            bail!("pod {}/{} already exists", key.0, key.1);
        }
        let result = self.create_pod(node, &options);
        if result.is_err() {
            lock(&self.pods).remove(&key);
        }
        result
    }

    fn create_pod(&self, node: &Node, options: &PodOptions) -> anyhow::Result<Pod> {
        if options.announce && !node.proxy_running() {
            bail!(
                "pod {}/{}: {}'s node proxy is not running, so the pod cannot be announced \
                 (start it with node.start_proxy(), or add the pod with PodOptions::announce(false))",
                options.namespace,
                options.name,
                node.name
            );
        }
        let k = next(&node.pods_created);
        if k >= MAX_PODS_PER_NODE {
            bail!("{} already had {MAX_PODS_PER_NODE} pods; no addresses left", node.name);
        }
        let qualified = format!("{}.{}", options.namespace, options.name);
        let netns_name = self.run.netns_name(&format!("pod-{qualified}"));
        let ip = topology::pod_ip(node.index, k);
        let cgroup = node.capture_root().join(&qualified);
        let spec = PodSpec {
            uid: format!("ambit-{}-{:04}", self.run.id(), next(&self.pods_created)),
            name: options.name.clone(),
            namespace: options.namespace.clone(),
            service_account: options.service_account.clone(),
            labels: options.labels.clone(),
            ips: vec![ip.into()],
            node: node.name.clone(),
            netns: crate::ns::path(&netns_name),
            cgroup: Some(cgroup.clone()),
        };
        spec.validate().map_err(|e| anyhow::anyhow!("invalid pod: {e}"))?;
        let netns = self.run.create_netns(&format!("pod-{qualified}"))?;
        let pod = Pod {
            run: self.run.clone(),
            node_index: node.index,
            node_netns_name: node.netns_name.clone(),
            ip,
            netns,
            netns_name,
            cgroup,
            veth: format!("vp{k}"),
            announced: options.announce,
            removed: false.into(),
            log_path: self.run.dir().join(format!("pod-{qualified}.log")),
            spec,
        };
        if let Err(e) = self.setup_pod(node, &pod) {
            let _ = pod.teardown();
            return Err(e);
        }
        Ok(pod)
    }

    fn setup_pod(&self, node: &Node, pod: &Pod) -> anyhow::Result<()> {
        if let Some(cp) = &self.control_plane {
            cp.write_pod(&pod.spec)?;
            lock(&self.pod_uids).push(pod.spec.uid.clone());
        }
        self.run.create_cgroup(&format!("{}/pods/{}.{}", node.name, pod.namespace(), pod.name()))?;
        topology::wire_pod(&topology::PodLink {
            node_netns: &node.netns_name,
            node: &node.netns,
            pod_netns: &pod.netns_name,
            veth: &pod.veth,
            ip: pod.ip,
        })?;
        if pod.announced {
            node.pod_api()
                .add(&pod.spec)
                .with_context(|| format!("announcing pod {} to {}'s node proxy", pod.spec.key(), node.name))?;
        }
        Ok(())
    }

    /// Deletes the pod: tells its node proxy (if it was announced and the proxy runs; a CNI DEL
    /// during a proxy outage is left to the proxy's reconciliation), then kills its processes and
    /// removes its veth, namespace and cgroup.
    pub fn remove_pod(&self, pod: &Pod) -> anyhow::Result<()> {
        if pod.removed.load(std::sync::atomic::Ordering::Acquire) {
            bail!("pod {} was already removed", pod.spec.key());
        }
        let node = self.node(pod.node_index);
        let announced = if pod.announced && node.proxy_running() {
            node.pod_api()
                .delete(pod.uid())
                .with_context(|| format!("deleting pod {} from {}'s node proxy", pod.spec.key(), node.name))
        } else {
            Ok(())
        };
        let local = pod.teardown();
        if let Some(cp) = &self.control_plane {
            cp.remove_pod(&pod.spec)?;
            lock(&self.pod_uids).retain(|uid| uid != &pod.spec.uid);
        }
        lock(&self.pods).remove(&(pod.namespace().to_owned(), pod.name().to_owned()));
        announced.and(local)
    }

    /// Cleans up now and reports what could not be removed (dropping does the same, silently
    /// apart from stderr).
    pub fn shutdown(self) -> anyhow::Result<()> {
        let errors = self.run.cleanup();
        if !errors.is_empty() {
            bail!("cleanup of run {} was incomplete:\n  {}", self.run.id(), errors.join("\n  "));
        }
        Ok(())
    }

    fn print_proxy_logs(&self) {
        let logs: Vec<&Node> = self.nodes.iter().filter(|n| n.log_path().exists()).collect();
        if logs.is_empty() && self.control_plane.is_none() {
            return;
        }
        eprintln!("ambit harness: the test panicked; logs of run {}:", self.run.id());
        for node in logs {
            eprintln!("{}", node.log_tail_block(LOG_TAIL_LINES));
        }
        if let Some(cp) = &self.control_plane {
            eprintln!("{}", cp.log_tail_block(LOG_TAIL_LINES));
        }
    }
}

/// Whether the control plane holds every pod in `uids` and `nodes` subscribers hold its version.
fn converged(cp: &ControlPlane, uids: &[String], nodes: usize) -> anyhow::Result<bool> {
    let dump = cp.admin_get("/config_dump")?;
    let pods: std::collections::BTreeSet<&str> = dump["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["kind"] == "Pod")
        .filter_map(|o| o["uid"].as_str())
        .collect();
    if !uids.iter().all(|uid| pods.contains(uid.as_str())) {
        return Ok(false);
    }
    let version = dump["status"]["version"].as_u64().unwrap_or(0);
    let subscribers = cp.admin_get("/subscribers")?;
    let acked =
        subscribers.as_array().into_iter().flatten().filter(|s| s["inSyncVersion"].as_u64() == Some(version)).count();
    Ok(acked >= nodes)
}

/// Whether a node proxy holds an issued certificate for each of its enrolled pods.
fn certificates_ready(node: &Node) -> anyhow::Result<bool> {
    if !node.proxy_running() {
        return Ok(true);
    }
    let dump = node.admin_get("/config_dump")?;
    let enrolled = dump["pods"].as_array().into_iter().flatten().filter(|p| p["enrolled"] == true).count() as u64;
    let certificates = dump["identity"]["certificates"].as_array().cloned().unwrap_or_default();
    let holders: u64 = certificates.iter().filter_map(|c| c["pods"].as_u64()).sum();
    let issued = certificates.iter().all(|c| c["notAfterUnix"].is_u64());
    Ok(holders == enrolled && issued)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_proxy_logs();
        }
        // The `_guard` field cleans up right after this.
    }
}
