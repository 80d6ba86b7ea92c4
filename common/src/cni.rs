//! The CNI plugin side of the pod-event API: turns a CNI invocation (environment + network config
//! on stdin, per the CNI spec) into a pod event for the node proxy. Ambit's plugin is *chained*:
//! it runs after the network plugin that gave the pod its addresses and reads them from
//! `prevResult`. All parsing lives here (and is unit-tested); `ambit-cni` only does IO.
//!
//! Spec: <https://www.cni.dev/docs/spec/>.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::pod_api::PodSpec;

/// CNI spec versions this plugin accepts (it only reads `prevResult.ips`, stable since 0.3.0).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Well-known CNI error codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Plugin-specific: the node proxy refused or failed the pod.
    pub const NODE_PROXY_ERROR: u32 = 100;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

/// The network configuration on stdin: standard fields plus Ambit's own.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The node proxy's pod-event socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// This node's name as Kubernetes knows it; defaults to the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/var/run/ambit/node-proxy.sock")
}

/// A CNI error, printed as the spec's error JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self { cni_version: "1.0.0".into(), code, msg: msg.into(), details: String::new() }
    }
}

/// Everything one invocation carries, validated.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub command: Command,
    pub conf: Option<NetConf>,
    pub netns: Option<PathBuf>,
    pub args: BTreeMap<String, String>,
}

/// Parses the CNI environment (`CNI_COMMAND`, `CNI_NETNS`, `CNI_ARGS`) and stdin.
pub fn parse(env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Invocation, CniError> {
    let command = match env("CNI_COMMAND").as_deref() {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("VERSION") => Command::Version,
        other => {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_COMMAND must be ADD, DEL, CHECK or VERSION (got {other:?})"),
            ));
        }
    };
    if command == Command::Version {
        return Ok(Invocation { command, conf: None, netns: None, args: BTreeMap::new() });
    }
    let conf: NetConf = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODING_FAILURE, format!("network configuration on stdin: {e}")))?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {} is not supported (supported: {})", conf.cni_version, SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    let args = env("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let netns = env("CNI_NETNS").filter(|s| !s.is_empty()).map(PathBuf::from);
    Ok(Invocation { command, conf: Some(conf), netns, args })
}

impl Invocation {
    pub fn arg(&self, key: &str) -> Result<&str, CniError> {
        self.args.get(key).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_ARGS has no {key}: is this plugin chained in a Kubernetes pod network?"),
            )
        })
    }

    /// The pod uid, for DEL and CHECK.
    pub fn pod_uid(&self) -> Result<&str, CniError> {
        self.arg("K8S_POD_UID")
    }

    /// The pod event for ADD. Labels and service account are not part of a CNI call; until the
    /// node proxy learns them from the control plane, enrollment follows the namespace label.
    pub fn pod_spec(&self, default_node: impl FnOnce() -> Option<String>) -> Result<PodSpec, CniError> {
        let conf = self.conf.as_ref().expect("ADD/DEL/CHECK always carry a config");
        let invalid_conf = |msg: String| CniError::new(code::INVALID_NETWORK_CONFIG, msg);
        let prev = conf.prev_result.as_ref().ok_or_else(|| {
            invalid_conf(
                "no prevResult: ambit-cni is a chained plugin and must come after the plugin that \
                 assigns pod addresses in the conflist"
                    .into(),
            )
        })?;
        let ips = ips_from_result(prev).map_err(invalid_conf)?;
        let node = conf.node_name.clone().or_else(default_node).ok_or_else(|| {
            invalid_conf("no nodeName in the network configuration and no host name to fall back to".into())
        })?;
        let netns =
            self.netns.clone().ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is not set"))?;
        Ok(PodSpec {
            uid: self.pod_uid()?.to_owned(),
            name: self.arg("K8S_POD_NAME")?.to_owned(),
            namespace: self.arg("K8S_POD_NAMESPACE")?.to_owned(),
            service_account: "default".to_owned(),
            labels: BTreeMap::new(),
            ips,
            node,
            netns,
            cgroup: None,
        })
    }
}

/// Pod addresses from a CNI result (`ips[].address`, CIDR notation).
fn ips_from_result(result: &serde_json::Value) -> Result<Vec<IpAddr>, String> {
    let entries = result
        .get("ips")
        .and_then(|v| v.as_array())
        .ok_or("prevResult has no ips: the previous plugin assigned no addresses")?;
    let mut ips = Vec::new();
    for entry in entries {
        let address = entry.get("address").and_then(|a| a.as_str()).ok_or("prevResult.ips[] entry without address")?;
        let ip = address.split('/').next().unwrap_or_default();
        ips.push(ip.parse().map_err(|e| format!("prevResult.ips[].address {address:?}: {e}"))?);
    }
    if ips.is_empty() {
        return Err("prevResult.ips is empty".into());
    }
    Ok(ips)
}

/// What `VERSION` prints.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({ "cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| (*v).to_owned())
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"ambit-cni",
        "socket":"/run/ambit/n1.sock","nodeName":"node-1",
        "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.7/32"},{"address":"fd00::7/128"}]}}"#;

    #[test]
    fn add_builds_a_pod_event() {
        let inv = parse(
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_NETNS", "/var/run/netns/cni-1"),
                ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-0;K8S_POD_UID=abc-123"),
            ]),
            CONF.as_bytes(),
        )
        .unwrap();
        assert_eq!(inv.command, Command::Add);
        let pod = inv.pod_spec(|| None).unwrap();
        assert_eq!((pod.namespace.as_str(), pod.name.as_str(), pod.uid.as_str()), ("shop", "cart-0", "abc-123"));
        assert_eq!(pod.ips.len(), 2);
        assert_eq!(pod.node, "node-1");
        pod.validate().unwrap();
        assert_eq!(inv.conf.unwrap().socket, PathBuf::from("/run/ambit/n1.sock"));
    }

    #[test]
    fn errors_carry_cni_codes() {
        let e = parse(env(&[("CNI_COMMAND", "FROB")]), b"").unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        let e = parse(env(&[("CNI_COMMAND", "ADD")]), b"{not json").unwrap_err();
        assert_eq!(e.code, code::DECODING_FAILURE);
        let e = parse(env(&[("CNI_COMMAND", "ADD")]), br#"{"cniVersion":"0.1.0","name":"n","type":"t"}"#).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        let inv = parse(
            env(&[("CNI_COMMAND", "ADD"), ("CNI_NETNS", "/x")]),
            br#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#,
        )
        .unwrap();
        let e = inv.pod_spec(|| Some("n".into())).unwrap_err();
        assert!(e.msg.contains("chained"), "{e}");
        let inv = parse(env(&[("CNI_COMMAND", "DEL")]), CONF.as_bytes()).unwrap();
        assert!(inv.pod_uid().unwrap_err().msg.contains("K8S_POD_UID"));
    }

    #[test]
    fn version_needs_no_config() {
        assert_eq!(parse(env(&[("CNI_COMMAND", "VERSION")]), b"").unwrap().command, Command::Version);
        assert_eq!(version_info()["supportedVersions"][3], "1.0.0");
    }
}
