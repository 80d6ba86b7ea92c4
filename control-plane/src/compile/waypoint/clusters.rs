//! Cluster resources: a destination service's port and subset, with its ready endpoints and the
//! traffic policy of the DestinationRule that applies.

use ambit_common::{
    api::v1::{AppProtocol, Cluster},
    config::model::{DestinationRule, Labels},
};

use super::{Ctx, endpoints, policy::Parts, routes::ClusterKey};

impl<'a> Ctx<'a> {
    /// The DestinationRule that applies to `key`'s host for this waypoint, and the policy for
    /// `key`'s port and subset.
    pub(super) fn policy(&self, key: &ClusterKey) -> (Option<&'a DestinationRule>, Parts<'a>) {
        let service_namespace = self.index.services.get(&key.hostname).map(|s| s.namespace);
        let rule = self.index.rules.lookup(
            self.waypoint_namespace,
            service_namespace,
            &self.index.mesh.root_namespace,
            &key.hostname,
        );
        let subset = rule.and_then(|r| r.subset(&key.subset));
        (rule, Parts::effective(rule, subset, key.port))
    }
}

/// A cluster for a host that is no known service, for a port the service does not have, or for a
/// subset the applicable DestinationRule does not define, has no endpoints: its requests fail
/// with 503 (UH), where Envoy would answer 503 (NC) for a cluster it lacks.
pub(super) fn cluster(ctx: &Ctx<'_>, key: &ClusterKey) -> Cluster {
    let service = ctx.index.services.get(&key.hostname);
    let port = service.and_then(|s| s.port(key.port));
    let (rule, parts) = ctx.policy(key);
    // `Some(None)`: the whole service; `None`: an undefined subset.
    let subset: Option<Option<&Labels>> = if key.subset.is_empty() {
        Some(None)
    } else {
        rule.and_then(|r| r.subset(&key.subset)).map(|s| Some(&s.labels))
    };
    let endpoints = match (service, port, subset) {
        (Some(service), Some(port), Some(labels)) => endpoints::ready(ctx.index, service, port, labels),
        _ => Vec::new(),
    };
    Cluster {
        hostname: key.hostname.clone(),
        port: u32::from(key.port),
        subset: key.subset.clone(),
        namespace: service.map(|s| s.namespace.to_string()).unwrap_or_default(),
        service_name: service.map(|s| s.name.to_string()).unwrap_or_default(),
        upstream_protocol: parts.upstream_protocol(port.map_or(AppProtocol::Unspecified, |p| p.protocol)).into(),
        endpoints,
        load_balancer: Some(parts.load_balancer()),
        connection_pool: Some(parts.connection_pool()),
        outlier_detection: parts.outlier_detection(),
        destination_rule: rule.map(|r| format!("{}/{}", r.meta.namespace, r.meta.name)).unwrap_or_default(),
    }
}
