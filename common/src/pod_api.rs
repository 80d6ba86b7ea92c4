//! The pod-event API: how the CNI plugin (and the test harness, standing in for it) tells a node
//! proxy about pods on its node. HTTP/1.1 with JSON bodies on a unix socket:
//!
//! | request | meaning |
//! |---|---|
//! | `POST /v1/pods` with a [`PodSpec`] | pod added (or updated; idempotent by uid). Answers once capture is in place. |
//! | `DELETE /v1/pods/{uid}` | pod deleted (idempotent) |
//! | `GET /v1/pods/{uid}` | the pod's [`PodStatus`], 404 if unknown |
//! | `GET /v1/pods` | every known pod's status |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status. `curl --unix-socket <path>` works too.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    enrollment::Enrollment,
    names::{check_dns_label, check_dns_subdomain},
};

/// A pod on this node, as the CNI plugin reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    #[serde(default = "default_service_account")]
    pub service_account: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    pub node: String,
    /// Path of the pod's network namespace (e.g. `/var/run/netns/cni-…` or `/proc/<pid>/ns/net`).
    pub netns: PathBuf,
    /// The pod's cgroup, when known (informational: capture is keyed by network namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

fn default_service_account() -> String {
    "default".to_owned()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("pod {pod}: field {field}: {message}")]
pub struct PodSpecError {
    pub pod: String,
    pub field: &'static str,
    pub message: String,
}

impl PodSpec {
    /// `namespace/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The pod's IPv4 address: Ambit's pods are IPv4 (IPv6 pod addresses are not supported yet).
    pub fn ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.ips.iter().find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    pub fn validate(&self) -> Result<(), PodSpecError> {
        let err = |field, message: String| PodSpecError { pod: self.key(), field, message };
        if self.uid.is_empty() || self.uid.len() > 128 || self.uid.contains(['/', '\0']) {
            return Err(err("uid", "must be 1-128 characters without '/'".into()));
        }
        check_dns_subdomain(&self.name).map_err(|m| err("name", m))?;
        check_dns_label(&self.namespace).map_err(|m| err("namespace", m))?;
        check_dns_subdomain(&self.service_account).map_err(|m| err("serviceAccount", m))?;
        if self.ipv4().is_none() {
            return Err(err(
                "ips",
                format!("needs an IPv4 address (got {:?}); IPv6-only pods are not supported yet", self.ips),
            ));
        }
        if self.node.is_empty() {
            return Err(err("node", "must not be empty".into()));
        }
        if !self.netns.is_absolute() {
            return Err(err("netns", format!("must be an absolute path (got {})", self.netns.display())));
        }
        Ok(())
    }
}

/// What the node proxy knows about a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub enrolled: bool,
    /// Why it is (not) enrolled, in words.
    pub reason: String,
    pub spec: PodSpec,
}

impl PodStatus {
    pub fn new(spec: PodSpec, enrollment: Enrollment) -> Self {
        Self {
            uid: spec.uid.clone(),
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            enrolled: enrollment.is_enrolled(),
            reason: enrollment.to_string(),
            spec,
        }
    }
}

/// Body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the node proxy at {path}: {source} (is the node proxy running on this node, \
         and is its --api-socket this path?)"
    )]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("talking to the node proxy at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the node proxy answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the node proxy sent a malformed response: {0}")]
    Malformed(String),
}

/// A blocking client for the pod-event API: the CNI plugin runs without an async runtime.
pub struct PodApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl PodApiClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), timeout: Duration::from_secs(30) }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn add(&self, pod: &PodSpec) -> Result<PodStatus, ClientError> {
        let body = serde_json::to_vec(pod).map_err(|e| ClientError::Malformed(e.to_string()))?;
        let (status, body) = self.request("POST", "/v1/pods", Some(&body))?;
        Self::decode(status, &body)
    }

    pub fn delete(&self, uid: &str) -> Result<(), ClientError> {
        let (status, body) = self.request("DELETE", &format!("/v1/pods/{uid}"), None)?;
        Self::decode::<serde_json::Value>(status, &body).map(drop)
    }

    pub fn get(&self, uid: &str) -> Result<Option<PodStatus>, ClientError> {
        let (status, body) = self.request("GET", &format!("/v1/pods/{uid}"), None)?;
        if status == 404 {
            return Ok(None);
        }
        Self::decode(status, &body).map(Some)
    }

    pub fn list(&self) -> Result<Vec<PodStatus>, ClientError> {
        let (status, body) = self.request("GET", "/v1/pods", None)?;
        Self::decode(status, &body)
    }

    fn decode<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ApiError>(body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_slice(body).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ClientError> {
        let io = |source| ClientError::Io { path: self.socket.clone(), source };
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: node-proxy\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).map_err(io)?;
        parse_response(&response)
    }
}

/// Parses a complete `Connection: close` HTTP/1.1 response with a Content-Length body.
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let malformed = |what: &str| ClientError::Malformed(what.to_owned());
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| malformed("headers are not UTF-8"))?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("bad status line"))?;
    let body = &response[split + 4..];
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) if n <= body.len() => Ok((status, body[..n].to_vec())),
        Some(_) => Err(malformed("body shorter than Content-Length")),
        None => Ok((status, body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodSpec {
        PodSpec {
            uid: "0b7c-1".into(),
            name: "web-1".into(),
            namespace: "demo".into(),
            service_account: "default".into(),
            labels: BTreeMap::new(),
            ips: vec!["10.1.0.2".parse().unwrap()],
            node: "node-1".into(),
            netns: "/run/netns/web-1".into(),
            cgroup: None,
        }
    }

    #[test]
    fn valid_pod_passes() {
        pod().validate().unwrap();
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut p = pod();
        p.ips = vec!["fd00::1".parse().unwrap()];
        assert_eq!(p.validate().unwrap_err().field, "ips");
        let mut p = pod();
        p.netns = "netns".into();
        assert_eq!(p.validate().unwrap_err().field, "netns");
        let mut p = pod();
        p.namespace = "Demo".into();
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "namespace");
        assert!(e.to_string().starts_with("pod Demo/web-1: field namespace"), "{e}");
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let mut v = serde_json::to_value(pod()).unwrap();
        v["nmae"] = "x".into();
        let e = serde_json::from_value::<PodSpec>(v).unwrap_err();
        assert!(e.to_string().contains("nmae"), "{e}");
    }

    #[test]
    fn parses_responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{}"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
