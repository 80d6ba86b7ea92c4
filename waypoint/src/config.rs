//! The waypoint's configuration: command-line flags (each with an environment variable for the
//! Deployment), validated once into an immutable, dumpable [`Config`]. Nothing else reads the
//! environment.

use std::{net::SocketAddr, path::PathBuf};

use ambit_common::identity::SpiffeId;
use serde::Serialize;

pub use ambit_common::logging::LogFormat;

/// Ambit's waypoint: the L7 proxy of a namespace's services (HBONE in, HTTP routing, HBONE out).
#[derive(Debug, clap::Parser)]
#[command(name = "waypoint", version)]
pub struct Args {
    /// The control plane (`https://host:15010`): configuration (Discovery) and certificates (CA).
    #[arg(long, env = "AMBIT_CONTROL_PLANE")]
    control_plane: String,
    /// PEM roots that sign the control plane's certificate and the mesh's workload certificates.
    #[arg(long, env = "AMBIT_CA_ROOT")]
    ca_root: PathBuf,
    /// A token proving this waypoint's identity to the control plane (re-read for every request).
    #[arg(long, env = "AMBIT_TOKEN_FILE")]
    token_file: PathBuf,
    /// The namespace of this waypoint's Gateway.
    #[arg(long, env = "AMBIT_WAYPOINT_NAMESPACE")]
    namespace: String,
    /// The name of this waypoint's Gateway.
    #[arg(long, env = "AMBIT_WAYPOINT_NAME")]
    name: String,
    /// The waypoint's service account: its identity is spiffe://<td>/ns/<namespace>/sa/<this>.
    #[arg(long, env = "AMBIT_SERVICE_ACCOUNT")]
    service_account: String,
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
    /// HBONE listener.
    #[arg(long, env = "AMBIT_LISTEN", default_value = "0.0.0.0:15008")]
    listen: SocketAddr,
    /// Admin API address (/ready, /config_dump, /stats, /requests).
    #[arg(long, env = "AMBIT_ADMIN_ADDR", default_value = "127.0.0.1:15020")]
    admin: SocketAddr,
    /// Worker threads, each serving its own connections start to finish (Envoy's
    /// `--concurrency`); 0: one per CPU the process may run on.
    #[arg(long, env = "AMBIT_WORKERS", default_value_t = 0)]
    workers: usize,
    /// An upgraded (WebSocket) connection through the waypoint with no byte either way for this
    /// many seconds is closed (Envoy's `stream_idle_timeout`, 5 minutes unless set); 0: never.
    #[arg(long, env = "AMBIT_STREAM_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    stream_idle_timeout_secs: u64,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `debug,access=info`).
    #[arg(long, env = "AMBIT_LOG", default_value = "info")]
    log: String,
    #[arg(long, env = "AMBIT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The validated configuration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub control_plane: String,
    pub ca_root: PathBuf,
    pub token_file: PathBuf,
    pub namespace: String,
    pub name: String,
    /// The waypoint's own identity.
    pub identity: String,
    pub trust_domain: String,
    pub control_plane_identity: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// Worker threads (resolved: never 0).
    pub workers: usize,
    /// `None`: upgraded connections are never closed for idleness.
    pub stream_idle_timeout_secs: Option<u64>,
    pub log: String,
    pub log_format: LogFormat,
}

/// More workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--{flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

impl Args {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let err = |flag, message: String| ConfigError { flag, message };
        if !self.control_plane.starts_with("https://") {
            return Err(err(
                "control-plane",
                format!(
                    "must be an https:// URL like https://172.30.0.254:15010 (got {:?}): the waypoint needs the \
                     control plane's CA, which is served over TLS only",
                    self.control_plane
                ),
            ));
        }
        tonic::transport::Endpoint::from_shared(self.control_plane.clone())
            .map_err(|e| err("control-plane", format!("{:?} is not a valid URL: {e}", self.control_plane)))?;
        for (flag, path) in [("ca-root", &self.ca_root), ("token-file", &self.token_file)] {
            if !path.is_absolute() {
                return Err(err(flag, format!("must be an absolute path (got {})", path.display())));
            }
        }
        ambit_common::names::check_dns_subdomain(&self.trust_domain).map_err(|m| err("trust-domain", m))?;
        for (flag, value) in [("namespace", &self.namespace), ("name", &self.name)] {
            ambit_common::names::check_dns_subdomain(value)
                .map_err(|m| err(flag, format!("{m} (the Gateway's {flag}, a Kubernetes name)")))?;
        }
        let identity = SpiffeId::new(&self.trust_domain, &self.namespace, &self.service_account)
            .map_err(|e| err("service-account", e.to_string()))?;
        let control_plane_identity: SpiffeId =
            self.control_plane_identity.parse().map_err(|e| err("control-plane-identity", format!("{e}")))?;
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| err("log", format!("invalid filter {:?}: {e}", self.log)))?;
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n if n <= MAX_WORKERS => n,
            n => return Err(err("workers", format!("{n} is more than {MAX_WORKERS}; use 0 for one per CPU"))),
        };
        Ok(Config {
            control_plane: self.control_plane,
            ca_root: self.ca_root,
            token_file: self.token_file,
            namespace: self.namespace,
            name: self.name,
            identity: identity.to_string(),
            trust_domain: self.trust_domain,
            control_plane_identity: control_plane_identity.to_string(),
            listen: self.listen,
            admin: self.admin,
            workers,
            stream_idle_timeout_secs: (self.stream_idle_timeout_secs > 0).then_some(self.stream_idle_timeout_secs),
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
            "--control-plane=https://172.30.0.254:15010",
            "--ca-root=/etc/ambit/ca.pem",
            "--token-file=/etc/ambit/token",
            "--namespace=bookinfo",
            "--name=waypoint",
            "--service-account=waypoint",
        ];
        let flag = |arg: &str| arg.split('=').next().unwrap_or_default().to_owned();
        let mut argv = vec!["waypoint"];
        argv.extend(defaults.iter().filter(|d| !extra.iter().any(|e| flag(e) == flag(d))));
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("flags parse").into_config()
    }

    #[test]
    fn defaults_and_the_identity_are_filled_in() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.identity, "spiffe://cluster.local/ns/bookinfo/sa/waypoint");
        assert_eq!(config.listen, "0.0.0.0:15008".parse().unwrap());
        assert_eq!(config.admin, "127.0.0.1:15020".parse().unwrap());
        assert_eq!(config.control_plane_identity, "spiffe://cluster.local/ns/istio-system/sa/ambit-control-plane");
        let dump = serde_json::to_value(&config).unwrap();
        assert_eq!(dump["logFormat"], "text");
        assert_eq!(config.workers, std::thread::available_parallelism().unwrap().get(), "one per CPU");
        assert_eq!(parse(&["--workers=3"]).unwrap().workers, 3);
        assert_eq!(config.stream_idle_timeout_secs, Some(300), "Envoy's default");
        assert_eq!(parse(&["--stream-idle-timeout-secs=0"]).unwrap().stream_idle_timeout_secs, None, "0: never");
        let td = parse(&["--trust-domain=example.org"]).unwrap();
        assert_eq!(td.identity, "spiffe://example.org/ns/bookinfo/sa/waypoint");
    }

    #[test]
    fn bad_flags_name_the_flag() {
        assert_eq!(parse(&["--control-plane=http://10.0.0.1:15010"]).unwrap_err().flag, "control-plane");
        assert_eq!(parse(&["--ca-root=ca.pem"]).unwrap_err().flag, "ca-root");
        assert_eq!(parse(&["--namespace=Not_Valid"]).unwrap_err().flag, "namespace");
        assert_eq!(parse(&["--workers=100000"]).unwrap_err().flag, "workers");
        assert_eq!(parse(&["--service-account=a/b"]).unwrap_err().flag, "service-account");
        assert_eq!(parse(&["--control-plane-identity=nope"]).unwrap_err().flag, "control-plane-identity");
        assert_eq!(parse(&["--log=[bad"]).unwrap_err().flag, "log");
    }
}
