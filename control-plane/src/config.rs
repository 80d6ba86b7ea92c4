//! The control plane's configuration: flags (each with an `AMBIT_*` environment variable),
//! validated once into an immutable, dumpable [`Config`].

use std::{net::SocketAddr, path::PathBuf};

use serde::Serialize;

use crate::{
    ca::{
        kubernetes::{DEFAULT_AUDIENCE, ServiceAccountRef},
        settings::{CaConfig, CallerAuth, MIN_CERT_LIFETIME, RootSource},
        store::{CERT_FILE, PlugInFiles},
    },
    compile::MeshConfig,
};

pub use ambit_common::logging::LogFormat;

/// Ambit's control plane: reads Istio and Kubernetes config, pushes it to node proxies and waypoints.
#[derive(Debug, clap::Parser)]
#[command(name = "control-plane", version)]
pub struct Args {
    /// Read config from this directory of YAML files (Namespaces, Pods, Services, EndpointSlices,
    /// Istio resources), watched for changes. Exactly one of --config-dir and --kubernetes.
    #[arg(long, env = "AMBIT_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Watch the Kubernetes API server (in-cluster config or $KUBECONFIG).
    #[arg(long, env = "AMBIT_KUBERNETES")]
    kubernetes: bool,
    /// gRPC address proxies subscribe to.
    #[arg(long, env = "AMBIT_GRPC_ADDR", default_value = "0.0.0.0:15010")]
    grpc_addr: SocketAddr,
    /// Admin API address (/ready, /metrics, /config_dump, /rejections, /subscribers).
    #[arg(long, env = "AMBIT_ADMIN_ADDR", default_value = "127.0.0.1:15014")]
    admin_addr: SocketAddr,
    /// SPIFFE trust domain of the identities the CA issues (`spiffe://<trust domain>/ns/…`).
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Policies in this namespace apply to the whole mesh.
    #[arg(long, env = "AMBIT_ROOT_NAMESPACE", default_value = "istio-system")]
    root_namespace: String,
    /// The cluster's DNS domain: services are `<name>.<namespace>.svc.<cluster domain>`, and
    /// short host names in Istio resources (`reviews`) resolve under it.
    #[arg(long, env = "AMBIT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The CA's directory: its root (`ca.crt`, `ca.key`) is kept here, generated on first start
    /// unless plug-in CA files are given; `ca.crt` is the trust bundle to give proxies
    /// (`--ca-root`). Required in local mode unless --plaintext-grpc or --ca-cert-file.
    #[arg(long, env = "AMBIT_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// A user-supplied CA certificate (Istio plug-in `ca-cert.pem`): a root or an intermediate.
    #[arg(long, env = "AMBIT_CA_CERT_FILE", requires = "ca_key_file")]
    ca_cert_file: Option<PathBuf>,
    /// Its private key (Istio plug-in `ca-key.pem`).
    #[arg(long, env = "AMBIT_CA_KEY_FILE", requires = "ca_cert_file")]
    ca_key_file: Option<PathBuf>,
    /// The root the CA certificate chains to (`root-cert.pem`): the trust bundle. Default:
    /// `root-cert.pem` beside --ca-cert-file if present, else the CA certificate itself.
    #[arg(long, env = "AMBIT_CA_ROOT_CERT_FILE", requires = "ca_cert_file")]
    ca_root_cert_file: Option<PathBuf>,
    /// Intermediates between the CA certificate and the root (`cert-chain.pem`), sent with
    /// every leaf. Default: `cert-chain.pem` beside --ca-cert-file if present.
    #[arg(long, env = "AMBIT_CA_CERT_CHAIN_FILE", requires = "ca_cert_file")]
    ca_cert_chain_file: Option<PathBuf>,
    /// Lifetime of issued certificates (Go duration syntax, at least 1s). Requests may ask for less.
    #[arg(long, env = "AMBIT_CERT_LIFETIME", default_value = "24h")]
    cert_lifetime: String,
    /// Local mode: a YAML/JSON map key → token, one token per entry. A key is a node name (a
    /// node proxy proves its node with that token) or `waypoint/<namespace>/<gateway name>` (the
    /// waypoint of that Gateway proves itself, and may get only its pods' service-account
    /// identity). Sent as `authorization: Bearer …`; re-read when it changes.
    #[arg(long, env = "AMBIT_NODE_CREDENTIALS")]
    node_credentials: Option<PathBuf>,
    /// Kubernetes mode: the audience node proxies' projected tokens are issued for.
    #[arg(long, env = "AMBIT_TOKEN_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    token_audience: String,
    /// Kubernetes mode: the service account (`namespace/name`) node proxies run as; only it may
    /// ask the CA for other workloads' certificates (a waypoint's pod-bound token gets only its
    /// own service account's).
    #[arg(long, env = "AMBIT_NODE_PROXY_SERVICE_ACCOUNT", default_value = "istio-system/ambit-node-proxy")]
    node_proxy_service_account: String,
    /// Serve gRPC without TLS (debugging only: node tokens then cross the network in clear).
    #[arg(long, env = "AMBIT_PLAINTEXT_GRPC")]
    plaintext_grpc: bool,
    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "AMBIT_LOG", default_value = "info")]
    log: String,
    #[arg(long, env = "AMBIT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SourceConfig {
    Directory { path: PathBuf },
    Kubernetes,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub source: SourceConfig,
    pub grpc_addr: SocketAddr,
    pub grpc_transport: GrpcTransport,
    /// `None`: no CA (only with plaintext gRPC in local mode without a root configured).
    pub ca: Option<CaConfig>,
    pub admin_addr: SocketAddr,
    pub mesh: MeshConfig,
    pub log: String,
    pub log_format: LogFormat,
}

/// Whether the gRPC port speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrpcTransport {
    /// TLS 1.3 with the control plane's own certificate from its CA.
    Tls,
    /// `--plaintext-grpc`.
    Plaintext,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}: {message}")]
pub struct ConfigError {
    flag: &'static str,
    message: String,
}

impl Args {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let err = |flag, message: String| ConfigError { flag, message };
        let source = match (self.config_dir.clone(), self.kubernetes) {
            (Some(path), false) if path.is_absolute() => SourceConfig::Directory { path },
            (Some(path), false) => {
                return Err(err("config-dir", format!("must be an absolute path (got {})", path.display())));
            }
            (None, true) => SourceConfig::Kubernetes,
            (Some(_), true) => return Err(err("kubernetes", "choose one source: --config-dir or --kubernetes".into())),
            (None, false) => {
                return Err(err("config-dir", "a source is required: --config-dir <dir> or --kubernetes".into()));
            }
        };
        for (flag, value) in [("trust-domain", &self.trust_domain), ("cluster-domain", &self.cluster_domain)] {
            ambit_common::names::check_dns_subdomain(value).map_err(|m| err(flag, m))?;
        }
        ambit_common::names::check_dns_label(&self.root_namespace).map_err(|m| err("root-namespace", m))?;
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| err("log", format!("invalid filter {:?}: {e}", self.log)))?;
        let grpc_transport = if self.plaintext_grpc { GrpcTransport::Plaintext } else { GrpcTransport::Tls };
        let ca = self.ca_config(&source, grpc_transport)?;
        Ok(Config {
            source,
            grpc_addr: self.grpc_addr,
            grpc_transport,
            ca,
            admin_addr: self.admin_addr,
            mesh: MeshConfig {
                trust_domain: self.trust_domain,
                root_namespace: self.root_namespace,
                cluster_domain: self.cluster_domain,
            },
            log: self.log,
            log_format: self.log_format,
        })
    }
}

impl Args {
    /// The CA's settings; `None` only for plaintext local mode without any root configured.
    fn ca_config(&self, source: &SourceConfig, transport: GrpcTransport) -> Result<Option<CaConfig>, ConfigError> {
        let err = |flag, message: String| ConfigError { flag, message };
        for (flag, path) in [
            ("ca-dir", &self.ca_dir),
            ("ca-cert-file", &self.ca_cert_file),
            ("ca-key-file", &self.ca_key_file),
            ("ca-root-cert-file", &self.ca_root_cert_file),
            ("ca-cert-chain-file", &self.ca_cert_chain_file),
            ("node-credentials", &self.node_credentials),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_absolute()) {
                return Err(err(flag, format!("must be an absolute path (got {})", path.display())));
            }
        }
        let cert_lifetime =
            ambit_common::config::Duration::parse(&self.cert_lifetime).map_err(|m| err("cert-lifetime", m))?.as_std();
        if cert_lifetime < MIN_CERT_LIFETIME {
            return Err(err("cert-lifetime", format!("{:?} is shorter than the minimum, 1s", self.cert_lifetime)));
        }
        let plug_in = match (&self.ca_cert_file, &self.ca_key_file) {
            (Some(cert), Some(key)) => Some(PlugInFiles::new(
                cert.clone(),
                key.clone(),
                self.ca_root_cert_file.clone(),
                self.ca_cert_chain_file.clone(),
            )),
            _ => None,
        };
        let kubernetes = *source == SourceConfig::Kubernetes;
        let root = match (&self.ca_dir, plug_in, kubernetes) {
            (Some(dir), plug_in, false) => RootSource::Directory { dir: dir.clone(), plug_in },
            (_, Some(files), _) => RootSource::PlugIn { files },
            (_, None, true) => RootSource::KubernetesSecret { namespace: self.root_namespace.clone() },
            (None, None, false) if transport == GrpcTransport::Plaintext => return Ok(None),
            (None, None, false) => {
                return Err(err(
                    "ca-dir",
                    "the CA needs a directory for its root (--ca-dir <dir>), or plug-in CA files \
                     (--ca-cert-file, --ca-key-file); --plaintext-grpc runs without TLS and CA"
                        .into(),
                ));
            }
        };
        let callers = self.caller_auth(kubernetes)?;
        let bundle_file = self.ca_dir.as_ref().map(|dir| dir.join(CERT_FILE));
        Ok(Some(CaConfig { root, callers, cert_lifetime, bundle_file }))
    }

    /// How node proxies prove their node: TokenReview in Kubernetes, the credentials file locally.
    fn caller_auth(&self, kubernetes: bool) -> Result<CallerAuth, ConfigError> {
        let err = |flag, message: String| ConfigError { flag, message };
        if !kubernetes {
            return Ok(match &self.node_credentials {
                Some(file) => CallerAuth::NodeCredentials { file: file.clone() },
                None => CallerAuth::None,
            });
        }
        let node_proxy: ServiceAccountRef =
            self.node_proxy_service_account.parse().map_err(|m| err("node-proxy-service-account", m))?;
        if self.token_audience.is_empty() {
            return Err(err("token-audience", "must not be empty".into()));
        }
        Ok(CallerAuth::TokenReview { audience: self.token_audience.clone(), node_proxy })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Args::try_parse_from([&["control-plane"], args].concat()).expect("flags parse").into_config()
    }

    #[test]
    fn exactly_one_source() {
        assert!(matches!(
            parse(&["--config-dir=/etc/ambit", "--plaintext-grpc"]).unwrap().source,
            SourceConfig::Directory { .. }
        ));
        assert_eq!(parse(&["--kubernetes"]).unwrap().source, SourceConfig::Kubernetes);
        assert_eq!(parse(&[]).unwrap_err().flag, "config-dir");
        assert_eq!(parse(&["--kubernetes", "--config-dir=/x"]).unwrap_err().flag, "kubernetes");
        assert_eq!(parse(&["--config-dir=relative"]).unwrap_err().flag, "config-dir");
    }

    #[test]
    fn mesh_settings_are_validated() {
        let config = parse(&["--kubernetes"]).unwrap();
        assert_eq!(config.mesh, MeshConfig::default());
        assert_eq!(parse(&["--kubernetes", "--root-namespace=Istio_System"]).unwrap_err().flag, "root-namespace");
    }

    #[test]
    fn local_mode_needs_a_ca_unless_plaintext() {
        assert_eq!(parse(&["--config-dir=/etc/ambit"]).unwrap_err().flag, "ca-dir");
        let plaintext = parse(&["--config-dir=/etc/ambit", "--plaintext-grpc"]).unwrap();
        assert_eq!((plaintext.grpc_transport, plaintext.ca), (GrpcTransport::Plaintext, None));
        let config =
            parse(&["--config-dir=/etc/ambit", "--ca-dir=/var/lib/ambit/ca", "--node-credentials=/run/nodes.yaml"])
                .unwrap();
        let ca = config.ca.unwrap();
        assert_eq!(ca.root, RootSource::Directory { dir: "/var/lib/ambit/ca".into(), plug_in: None });
        assert_eq!(ca.callers, CallerAuth::NodeCredentials { file: "/run/nodes.yaml".into() });
        assert_eq!(ca.cert_lifetime, crate::ca::settings::DEFAULT_CERT_LIFETIME);
        assert_eq!(ca.bundle_file, Some("/var/lib/ambit/ca/ca.crt".into()));
    }

    #[test]
    fn cert_lifetime_has_a_minimum() {
        let ok = parse(&["--kubernetes", "--cert-lifetime=1s"]).unwrap();
        assert_eq!(ok.ca.unwrap().cert_lifetime, std::time::Duration::from_secs(1));
        assert_eq!(parse(&["--kubernetes", "--cert-lifetime=500ms"]).unwrap_err().flag, "cert-lifetime");
        assert_eq!(parse(&["--kubernetes", "--cert-lifetime=10"]).unwrap_err().flag, "cert-lifetime");
    }

    #[test]
    fn kubernetes_mode_reviews_tokens_of_the_node_proxy_service_account() {
        let ca = parse(&["--kubernetes"]).unwrap().ca.unwrap();
        assert_eq!(ca.root, RootSource::KubernetesSecret { namespace: "istio-system".into() });
        let CallerAuth::TokenReview { audience, node_proxy } = ca.callers else { panic!("TokenReview") };
        assert_eq!((audience.as_str(), node_proxy.to_string().as_str()), ("ambit-ca", "istio-system/ambit-node-proxy"));
        let err = parse(&["--kubernetes", "--node-proxy-service-account=ambit-node-proxy"]).unwrap_err();
        assert_eq!(err.flag, "node-proxy-service-account");
        let plug_in = parse(&[
            "--kubernetes",
            "--ca-cert-file=/etc/cacerts/ca-cert.pem",
            "--ca-key-file=/etc/cacerts/ca-key.pem",
        ]);
        assert!(matches!(plug_in.unwrap().ca.unwrap().root, RootSource::PlugIn { .. }));
    }
}
