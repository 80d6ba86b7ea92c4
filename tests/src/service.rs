//! Kubernetes Services in the local cluster. There is no EndpointSlice controller here, so a
//! Service is written together with the EndpointSlice that controller would write for it: one
//! ready endpoint per pod, with its `targetRef`.

use std::net::Ipv4Addr;

use crate::{Cluster, Pod};

/// A ClusterIP Service with one TCP port.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    namespace: String,
    name: String,
    vip: Ipv4Addr,
    port: u16,
    target_port: u16,
    /// `appProtocol` of the port (`http`, `http2`, `grpc`, `tcp`); `None`: unset, detected.
    app_protocol: Option<String>,
    labels: Vec<(String, String)>,
}

impl ServiceSpec {
    pub fn new(namespace: &str, name: &str, vip: Ipv4Addr, port: u16) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            vip,
            port,
            target_port: port,
            app_protocol: None,
            labels: Vec::new(),
        }
    }

    pub fn target_port(mut self, port: u16) -> Self {
        self.target_port = port;
        self
    }

    pub fn app_protocol(mut self, protocol: &str) -> Self {
        self.app_protocol = Some(protocol.to_owned());
        self
    }

    /// A label on the Service object, e.g. `istio.io/use-waypoint`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn vip(&self) -> Ipv4Addr {
        self.vip
    }

    /// `<vip>:<port>`, what clients connect to.
    pub fn address(&self) -> String {
        format!("{}:{}", self.vip, self.port)
    }

    /// `<name>.<namespace>.svc.cluster.local:<port>`, the authority clients route by.
    pub fn authority(&self) -> String {
        format!("{}.{}.svc.cluster.local:{}", self.name, self.namespace, self.port)
    }

    /// The Service and its EndpointSlice (`pods` as its ready endpoints), as YAML.
    pub fn yaml(&self, pods: &[&Pod]) -> String {
        let labels: serde_json::Map<String, serde_json::Value> =
            self.labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        let mut port = serde_json::json!({
            "name": "main", "port": self.port, "targetPort": self.target_port, "protocol": "TCP",
        });
        let mut slice_port = serde_json::json!({ "name": "main", "port": self.target_port, "protocol": "TCP" });
        if let Some(protocol) = &self.app_protocol {
            port["appProtocol"] = protocol.clone().into();
            slice_port["appProtocol"] = protocol.clone().into();
        }
        let service = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": self.name, "namespace": self.namespace, "labels": labels },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.vip.to_string(),
                "clusterIPs": [self.vip.to_string()],
                "ports": [port],
            },
        });
        let endpoints: Vec<serde_json::Value> = pods
            .iter()
            .map(|pod| {
                serde_json::json!({
                    "addresses": [pod.ip().to_string()],
                    "conditions": { "ready": true, "serving": true, "terminating": false },
                    "nodeName": pod.node_name(),
                    "targetRef": { "kind": "Pod", "namespace": pod.namespace(), "name": pod.name(), "uid": pod.uid() },
                })
            })
            .collect();
        let slice = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-slice", self.name),
                "namespace": self.namespace,
                "labels": { "kubernetes.io/service-name": self.name },
            },
            "addressType": "IPv4",
            "ports": [slice_port],
            "endpoints": endpoints,
        });
        format!("{service}\n---\n{slice}\n")
    }
}

impl Cluster {
    /// Applies the Service and its EndpointSlice (`pods` its ready endpoints) and waits until
    /// every node proxy has them.
    pub fn add_service(&self, service: &ServiceSpec, pods: &[&Pod]) -> anyhow::Result<()> {
        self.apply(
            &format!("service-{}.{}.yaml", service.namespace, service.name),
            &service.yaml(pods),
            &[
                ("Service", &service.namespace, &service.name),
                ("EndpointSlice", &service.namespace, &format!("{}-slice", service.name)),
            ],
        )
    }
}
