//! The kinds Ambit reads, and which `apiVersion`s it accepts for each.

use std::fmt;

use serde::Serialize;

/// Every kind of object the config model understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    ServiceAccount,
    /// `gateway.networking.k8s.io` Gateway: how ambient mode declares waypoints.
    Gateway,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    AuthorizationPolicy,
    PeerAuthentication,
}

const NETWORKING: &[&str] = &["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"];
const SECURITY: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];
const GATEWAY_API: &[&str] = &["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"];

/// Istio kinds that Ambit knows but does not implement; documents of these kinds are
/// skipped with a reason that says so rather than a bare "unknown kind".
const ISTIO_UNSUPPORTED: &[&str] = &[
    "Gateway",
    "Sidecar",
    "EnvoyFilter",
    "WorkloadEntry",
    "WorkloadGroup",
    "ProxyConfig",
    "RequestAuthentication",
    "Telemetry",
    "WasmPlugin",
];

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::ServiceAccount,
        Kind::Gateway,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::AuthorizationPolicy,
        Kind::PeerAuthentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
        }
    }

    /// The `apiVersion`s accepted for this kind; the first is the preferred one.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace | Kind::Pod | Kind::Service | Kind::ServiceAccount => &["v1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
            Kind::Gateway => GATEWAY_API,
            Kind::VirtualService | Kind::DestinationRule | Kind::ServiceEntry => NETWORKING,
            Kind::AuthorizationPolicy | Kind::PeerAuthentication => SECURITY,
        }
    }

    /// Cluster-scoped kinds have no namespace.
    pub fn is_namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Istio kinds are parsed strictly (unknown fields are errors); Kubernetes kinds leniently.
    pub fn is_istio(self) -> bool {
        matches!(
            self,
            Kind::VirtualService
                | Kind::DestinationRule
                | Kind::ServiceEntry
                | Kind::AuthorizationPolicy
                | Kind::PeerAuthentication
        )
    }

    /// Which kind a document is, or why Ambit skips it.
    pub fn resolve(api_version: &str, kind: &str) -> Result<Kind, String> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let named = Kind::ALL.iter().copied().filter(|k| k.as_str() == kind);
        let mut known_kind = false;
        for candidate in named {
            known_kind = true;
            if candidate.api_versions().contains(&api_version) {
                return Ok(candidate);
            }
        }
        let istio_group = matches!(group, "networking.istio.io" | "security.istio.io");
        if (istio_group && ISTIO_UNSUPPORTED.contains(&kind))
            || matches!(group, "telemetry.istio.io" | "extensions.istio.io")
        {
            return Err(format!("{api_version} {kind} is not supported by Ambit"));
        }
        if known_kind {
            let expected: Vec<&str> = Kind::ALL
                .iter()
                .filter(|k| k.as_str() == kind)
                .flat_map(|k| k.api_versions().iter().copied())
                .collect();
            return Err(format!(
                "apiVersion {api_version} is not one Ambit reads for {kind} (expected {})",
                expected.join(", ")
            ));
        }
        Err(format!("kind {kind} ({api_version}) is not one Ambit reads"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_aliases_and_explains_skips() {
        assert_eq!(Kind::resolve("networking.istio.io/v1alpha3", "VirtualService"), Ok(Kind::VirtualService));
        assert_eq!(Kind::resolve("security.istio.io/v1beta1", "PeerAuthentication"), Ok(Kind::PeerAuthentication));
        assert_eq!(Kind::resolve("gateway.networking.k8s.io/v1beta1", "Gateway"), Ok(Kind::Gateway));
        assert!(Kind::resolve("v1", "ConfigMap").unwrap_err().contains("ConfigMap"));
        assert!(Kind::resolve("networking.istio.io/v1", "Gateway").unwrap_err().contains("not supported by Ambit"));
        let wrong = Kind::resolve("networking.istio.io/v2", "VirtualService").unwrap_err();
        assert!(wrong.contains("networking.istio.io/v1beta1"), "{wrong}");
    }
}
