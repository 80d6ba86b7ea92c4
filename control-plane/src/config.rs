//! The control plane's configuration: flags (each with an `AMBIT_*` environment variable),
//! validated once into an immutable, dumpable [`Config`].

use std::{net::SocketAddr, path::PathBuf};

use serde::Serialize;

use crate::compile::MeshConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

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
    #[arg(long, env = "AMBIT_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Policies in this namespace apply to the whole mesh.
    #[arg(long, env = "AMBIT_ROOT_NAMESPACE", default_value = "istio-system")]
    root_namespace: String,
    #[arg(long, env = "AMBIT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
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
    pub admin_addr: SocketAddr,
    pub mesh: MeshConfig,
    pub log: String,
    pub log_format: LogFormat,
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
        let source = match (self.config_dir, self.kubernetes) {
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
        Ok(Config {
            source,
            grpc_addr: self.grpc_addr,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Args::try_parse_from([&["control-plane"], args].concat()).expect("flags parse").into_config()
    }

    #[test]
    fn exactly_one_source() {
        assert!(matches!(parse(&["--config-dir=/etc/ambit"]).unwrap().source, SourceConfig::Directory { .. }));
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
}
