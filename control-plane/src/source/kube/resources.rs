//! The API resources Ambit watches: one per [`Kind`], at the preferred `apiVersion` of each.

use ambit_common::config::Kind;
use kube::{core::GroupVersionKind, discovery::ApiResource};

/// One watched kind and how to ask the API server for it.
#[derive(Clone, Debug)]
pub(super) struct Resource {
    pub(super) kind: Kind,
    pub(super) api: ApiResource,
}

impl Resource {
    /// Every kind of the config model, in [`Kind::ALL`] order (which is also the order of
    /// objects in a reading).
    pub(super) fn all() -> Vec<Resource> {
        Kind::ALL.iter().map(|&kind| Resource::new(kind)).collect()
    }

    fn new(kind: Kind) -> Self {
        // The first accepted apiVersion is the one Ambit prefers and the one to watch: the API
        // server converts stored objects of older versions (v1beta1 …) to it.
        let api_version = kind.api_versions()[0];
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
        Resource { kind, api: ApiResource::from_gvk_with_plural(&gvk, plural(kind)) }
    }

    /// `pods`, `virtualservices.networking.istio.io`: how `kubectl` and RBAC name it.
    pub(super) fn resource_name(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    /// The ClusterRole rule the control plane needs to watch this kind.
    pub(super) fn rbac_rule(&self) -> String {
        format!(
            "{{apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [\"list\", \"watch\"]}}",
            self.api.group, self.api.plural
        )
    }

    /// Kinds that come from CRDs an installation may lack (Istio's, the Gateway API's).
    pub(super) fn is_crd(&self) -> bool {
        self.kind.is_istio() || self.kind == Kind::Gateway
    }
}

/// The resource names in URLs. Spelled out (not derived from the kind) because English
/// plurals are irregular: `serviceentries`, `authorizationpolicies`.
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Namespace => "namespaces",
        Kind::Pod => "pods",
        Kind::Service => "services",
        Kind::EndpointSlice => "endpointslices",
        Kind::ServiceAccount => "serviceaccounts",
        Kind::Gateway => "gateways",
        Kind::VirtualService => "virtualservices",
        Kind::DestinationRule => "destinationrules",
        Kind::ServiceEntry => "serviceentries",
        Kind::AuthorizationPolicy => "authorizationpolicies",
        Kind::PeerAuthentication => "peerauthentications",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_rules() {
        let all = Resource::all();
        assert_eq!(all.len(), Kind::ALL.len());
        let pods = all.iter().find(|r| r.kind == Kind::Pod).unwrap();
        assert_eq!((pods.api.group.as_str(), pods.api.api_version.as_str()), ("", "v1"));
        assert_eq!(pods.resource_name(), "pods");
        let se = all.iter().find(|r| r.kind == Kind::ServiceEntry).unwrap();
        assert_eq!(se.api.api_version, "networking.istio.io/v1");
        assert_eq!(se.resource_name(), "serviceentries.networking.istio.io");
        assert!(se.is_crd() && !pods.is_crd());
        let ap = all.iter().find(|r| r.kind == Kind::AuthorizationPolicy).unwrap();
        assert_eq!(
            ap.rbac_rule(),
            r#"{apiGroups: ["security.istio.io"], resources: ["authorizationpolicies"], verbs: ["list", "watch"]}"#
        );
    }
}
