//! The node proxy's configuration: command-line flags (each with an environment variable for the
//! DaemonSet), validated once into an immutable, dumpable [`Config`]. Nothing else reads the
//! environment.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Serialize;

pub(crate) use ambit_common::logging::LogFormat;

/// Ambit's per-node proxy: captures enrolled pods' TCP traffic with eBPF and carries it.
#[derive(Debug, clap::Parser)]
#[command(name = "node-proxy", version)]
pub(crate) struct Args {
    /// Name of the node this proxy serves; pod events for other nodes are refused.
    #[arg(long, env = "AMBIT_NODE_NAME")]
    node_name: String,
    /// Capture-root cgroup (v2): every pod's cgroup must be inside it (e.g. /sys/fs/cgroup/kubepods.slice).
    #[arg(long, env = "AMBIT_CGROUP_ROOT")]
    cgroup_root: PathBuf,
    /// Where the node proxy pins its maps and links; mounted as bpffs if it is not one.
    #[arg(long, env = "AMBIT_BPFFS", default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// Persistent state (known pods, last good namespace file).
    #[arg(long, env = "AMBIT_STATE_DIR", default_value = "/var/run/ambit")]
    state_dir: PathBuf,
    /// Unix socket of the pod-event API the CNI plugin calls [default: <state-dir>/node-proxy.sock].
    #[arg(long, env = "AMBIT_API_SOCKET")]
    api_socket: Option<PathBuf>,
    /// Admin API address (/ready, /config_dump, /stats, /connections).
    #[arg(long, env = "AMBIT_ADMIN_ADDR", default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
    /// Control plane to subscribe to (`http://host:15010`): it decides which pods are captured.
    /// Exactly one of --control-plane and --namespaces-file.
    #[arg(long, env = "AMBIT_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// PEM roots that sign the control plane's certificate (and, at first, peers'): required with
    /// an `https://` --control-plane.
    #[arg(long, env = "AMBIT_CA_ROOT")]
    ca_root: Option<PathBuf>,
    /// A token proving this node's identity to the control plane's CA (in Kubernetes: a projected
    /// service-account token); re-read for every request.
    #[arg(long, env = "AMBIT_CA_TOKEN_FILE")]
    ca_token_file: Option<PathBuf>,
    /// SPIFFE trust domain of the mesh.
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// The SPIFFE identity the control plane must present.
    #[arg(
        long,
        env = "AMBIT_CONTROL_PLANE_IDENTITY",
        default_value = "spiffe://cluster.local/ns/istio-system/sa/ambit-control-plane"
    )]
    control_plane_identity: String,
    /// Standalone mode, without a control plane: a YAML file of Namespace objects whose
    /// `istio.io/dataplane-mode=ambient` label enrolls pods (watched for changes).
    #[arg(long, env = "AMBIT_NAMESPACES_FILE")]
    namespaces_file: Option<PathBuf>,
    /// How long to wait for an upstream connection before resetting the client.
    #[arg(long, env = "AMBIT_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    connect_timeout_ms: u64,
    /// Worker threads carrying enrolled pods' connections (each pod's on one of them); 0: one
    /// per CPU the process may run on.
    #[arg(long, env = "AMBIT_WORKERS", default_value_t = 0)]
    workers: usize,
    /// How a connection between two pods enrolled on this node is carried: `local` hands it from
    /// the source pod's side to the destination pod's side inside the node proxy (authorized on
    /// the source's identity, no tunnel: the bytes never leave the node or the proxy); `hbone`
    /// tunnels it with mutual TLS through the pods' network like a connection to another node.
    #[arg(long, env = "AMBIT_SAME_NODE", value_enum, default_value = "local")]
    same_node: SameNode,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `debug,access=info`).
    #[arg(long, env = "AMBIT_LOG", default_value = "info")]
    log: String,
    #[arg(long, env = "AMBIT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
}

/// How a connection between two pods enrolled on the same node is carried (`--same-node`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub(crate) enum SameNode {
    /// Handed over inside the node proxy, authorized on the source pod's identity.
    Local,
    /// An HBONE tunnel, as between nodes.
    Hbone,
}

/// Where enrollment decisions come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub(crate) enum ClusterSourceConfig {
    /// `tls` is set for `https://` endpoints: identities and HBONE come with it.
    ControlPlane {
        endpoint: String,
        tls: Option<ControlPlaneTls>,
    },
    NamespacesFile {
        path: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ControlPlaneTls {
    pub(crate) ca_root: PathBuf,
    pub(crate) token_file: PathBuf,
    pub(crate) identity: String,
    pub(crate) trust_domain: String,
}

/// The validated configuration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Config {
    pub(crate) node_name: String,
    pub(crate) cgroup_root: PathBuf,
    pub(crate) bpffs: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) api_socket: PathBuf,
    pub(crate) admin_addr: SocketAddr,
    pub(crate) cluster_source: ClusterSourceConfig,
    #[serde(serialize_with = "millis")]
    pub(crate) connect_timeout: Duration,
    /// Worker threads (resolved: never 0).
    pub(crate) workers: usize,
    pub(crate) same_node: SameNode,
    pub(crate) log: String,
    pub(crate) log_format: LogFormat,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}: {message}")]
pub(crate) struct ConfigError {
    flag: &'static str,
    message: String,
}

impl Args {
    pub(crate) fn into_config(self) -> Result<Config, ConfigError> {
        let err = |flag, message: String| ConfigError { flag, message };
        ambit_common::names::check_dns_subdomain(&self.node_name)
            .map_err(|m| err("node-name", format!("{m} (Kubernetes node names are DNS subdomains)")))?;
        let cluster_source = match (self.control_plane, self.namespaces_file) {
            (Some(endpoint), None) if endpoint.starts_with("https://") => {
                let (Some(ca_root), Some(token_file)) = (self.ca_root, self.ca_token_file) else {
                    return Err(err("ca-root", "an https:// control plane needs --ca-root and --ca-token-file".into()));
                };
                let identity: ambit_common::identity::SpiffeId =
                    self.control_plane_identity.parse().map_err(|e| err("control-plane-identity", format!("{e}")))?;
                ambit_common::names::check_dns_subdomain(&self.trust_domain).map_err(|m| err("trust-domain", m))?;
                let tls = ControlPlaneTls {
                    ca_root,
                    token_file,
                    identity: identity.to_string(),
                    trust_domain: self.trust_domain,
                };
                ClusterSourceConfig::ControlPlane { endpoint, tls: Some(tls) }
            }
            (Some(endpoint), None) if endpoint.starts_with("http://") => {
                ClusterSourceConfig::ControlPlane { endpoint, tls: None }
            }
            (Some(endpoint), None) => {
                return Err(err(
                    "control-plane",
                    format!("must be a URL like http://10.0.0.1:15010 (got {endpoint:?})"),
                ));
            }
            (None, Some(path)) if path.is_absolute() => ClusterSourceConfig::NamespacesFile { path },
            (None, Some(path)) => {
                return Err(err("namespaces-file", format!("must be an absolute path (got {})", path.display())));
            }
            (Some(_), Some(_)) => {
                return Err(err(
                    "control-plane",
                    "choose one: --control-plane or --namespaces-file (standalone)".into(),
                ));
            }
            (None, None) => {
                return Err(err("control-plane", "required (or --namespaces-file for standalone mode)".into()));
            }
        };
        for (flag, path) in [("cgroup-root", &self.cgroup_root), ("bpffs", &self.bpffs), ("state-dir", &self.state_dir)]
        {
            if !path.is_absolute() {
                return Err(err(flag, format!("must be an absolute path (got {})", path.display())));
            }
        }
        let api_socket = self.api_socket.unwrap_or_else(|| self.state_dir.join("node-proxy.sock"));
        if !api_socket.is_absolute() {
            return Err(err("api-socket", format!("must be an absolute path (got {})", api_socket.display())));
        }
        if !(1..=300_000).contains(&self.connect_timeout_ms) {
            return Err(err("connect-timeout-ms", format!("must be 1..=300000 (got {})", self.connect_timeout_ms)));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| err("log", format!("invalid filter {:?}: {e}", self.log)))?;
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n if n <= 1024 => n,
            n => return Err(err("workers", format!("{n} is more than 1024; use 0 for one per CPU"))),
        };
        Ok(Config {
            node_name: self.node_name,
            cgroup_root: self.cgroup_root,
            bpffs: self.bpffs,
            state_dir: self.state_dir,
            api_socket,
            admin_addr: self.admin_addr,
            cluster_source,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            workers,
            same_node: self.same_node,
            log: self.log,
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Required flags plus `extra`; a flag in `extra` replaces the default one.
    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let defaults = [
            "--node-name=node-1",
            "--cgroup-root=/sys/fs/cgroup/kubepods",
            "--namespaces-file=/etc/ambit/namespaces.yaml",
        ];
        let flag = |arg: &str| arg.split('=').next().unwrap_or_default().to_owned();
        let mut argv = vec!["node-proxy"];
        argv.extend(defaults.iter().filter(|d| !extra.iter().any(|e| flag(e) == flag(d))));
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("flags parse").into_config()
    }

    #[test]
    fn defaults_are_filled_in() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.api_socket, PathBuf::from("/var/run/ambit/node-proxy.sock"));
        assert_eq!(config.admin_addr, "127.0.0.1:15000".parse().unwrap());
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.workers, std::thread::available_parallelism().unwrap().get(), "one per CPU");
        let dump = serde_json::to_value(&config).unwrap();
        assert_eq!(dump["connectTimeout"], "10000ms");
        assert_eq!((config.same_node, dump["sameNode"].as_str()), (SameNode::Local, Some("local")));
        assert_eq!(parse(&["--same-node=hbone"]).unwrap().same_node, SameNode::Hbone);
    }

    #[test]
    fn exactly_one_cluster_source() {
        assert!(matches!(parse(&[]).unwrap().cluster_source, ClusterSourceConfig::NamespacesFile { .. }));
        let e = parse(&["--control-plane=http://10.0.0.1:15010"]).unwrap_err();
        assert_eq!(e.flag, "control-plane", "both given");
        let args = ["node-proxy", "--node-name=n", "--cgroup-root=/c", "--control-plane=http://10.0.0.1:15010"];
        let config = Args::try_parse_from(args).unwrap().into_config().unwrap();
        assert_eq!(
            config.cluster_source,
            ClusterSourceConfig::ControlPlane { endpoint: "http://10.0.0.1:15010".into(), tls: None }
        );
        let args = ["node-proxy", "--node-name=n", "--cgroup-root=/c", "--control-plane=10.0.0.1:15010"];
        assert_eq!(Args::try_parse_from(args).unwrap().into_config().unwrap_err().flag, "control-plane");
    }

    #[test]
    fn an_https_control_plane_needs_its_roots_and_a_token() {
        let base = ["node-proxy", "--node-name=n", "--cgroup-root=/c", "--control-plane=https://10.0.0.1:15010"];
        let parse_with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            Args::try_parse_from(args).unwrap().into_config()
        };
        let e = parse_with(&[]).unwrap_err();
        assert_eq!(e.flag, "ca-root");
        assert!(e.to_string().contains("--ca-token-file"), "{e}");
        let config = parse_with(&["--ca-root=/r.pem", "--ca-token-file=/t"]).unwrap();
        let ClusterSourceConfig::ControlPlane { tls: Some(tls), .. } = config.cluster_source else { panic!() };
        assert_eq!(tls.identity, "spiffe://cluster.local/ns/istio-system/sa/ambit-control-plane");
        assert_eq!(tls.trust_domain, "cluster.local");
        let e = parse_with(&["--ca-root=/r.pem", "--ca-token-file=/t", "--control-plane-identity=cp"]).unwrap_err();
        assert_eq!(e.flag, "control-plane-identity");
        let e = parse_with(&["--ca-root=/r.pem", "--ca-token-file=/t", "--trust-domain=Bad_Domain"]).unwrap_err();
        assert_eq!(e.flag, "trust-domain");
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(parse(&["--state-dir=relative"]).unwrap_err().flag, "state-dir");
        assert_eq!(parse(&["--connect-timeout-ms=0"]).unwrap_err().flag, "connect-timeout-ms");
        assert_eq!(parse(&["--log=[bad"]).unwrap_err().flag, "log");
        let e = parse(&["--node-name=Node_1"]).unwrap_err();
        assert!(e.to_string().starts_with("--node-name:"), "{e}");
    }
}
