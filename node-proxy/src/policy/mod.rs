//! L4 policy at the node proxy: AuthorizationPolicy (as compiled by the control plane) and
//! PeerAuthentication, decided for each inbound connection.
//!
//! Pure: no IO, no clocks, nothing but the configuration and the connection's attributes.
//! The inbound path asks three questions of a connection to a local workload:
//!
//! 1. plaintext only: may it come in at all? [`plaintext_allowed`] (PeerAuthentication);
//! 2. every connection: if the port is bound to a waypoint, did it come from that waypoint?
//!    [`WaypointBindings::check`] ([`waypoint`]);
//! 3. every connection: is it authorized? [`Policies::authorize`] (AuthorizationPolicy), the
//!    rules of which live in [`authz`].
//!
//! `Mesh::authorize` asks 2 and 3 together, for new connections and live ones alike.
//!
//! The control plane does the parts that need the whole cluster: which policies apply to a
//! workload (`Workload.authorization_policies`), each policy's L4 form with L7 attributes
//! already handled, and the effective mTLS mode (`control-plane/src/compile/node/`). On a
//! configuration change the caller re-runs [`Policies::authorize`] for live connections and
//! closes those now denied.

mod authz;
mod matching;
mod mtls;
mod waypoint;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use ambit_common::{
    api::v1::{Authorization, AuthorizationAction, ResourceType, Workload, resource::Kind},
    discovery::ResourceSet,
};

pub(crate) use self::{
    authz::{ConnectionAttrs, Decision, DenyReason, authorize, policy_name},
    mtls::plaintext_allowed,
    waypoint::{BypassedWaypoint, WaypointBindings},
};

/// A workload lists a policy (`<namespace>/<name>`) the configuration does not hold.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("authorization policy {0} applies to the workload but is not in the configuration")]
pub(crate) struct MissingPolicy(pub(crate) String);

/// The authorization policies of one configuration, by resource name (`<namespace>/<name>`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Policies {
    by_name: BTreeMap<String, Authorization>,
}

impl Policies {
    /// The next view after `self`, from a new configuration. Warns about each policy with L7
    /// attributes once: when it first appears with them (or gains them).
    pub(crate) fn update(&self, by_name: BTreeMap<String, Authorization>) -> Self {
        let next = Self { by_name };
        for policy in next.newly_l7(self) {
            tracing::warn!(
                "AuthorizationPolicy {} has L7 attributes a node proxy cannot evaluate: {}",
                policy_name(policy),
                l7_consequence(policy)
            );
        }
        next
    }

    /// Policies with L7 attributes in `self` that did not have them in `previous`.
    fn newly_l7<'a>(&'a self, previous: &Self) -> impl Iterator<Item = &'a Authorization> {
        self.by_name
            .iter()
            .filter(|(name, policy)| policy.has_l7 && !previous.by_name.get(*name).is_some_and(|old| old.has_l7))
            .map(|(_, policy)| policy)
    }

    /// The policies that apply to `workload`, in the order the control plane listed them.
    pub(crate) fn for_workload<'a>(&'a self, workload: &Workload) -> Result<Vec<&'a Authorization>, MissingPolicy> {
        let find = |name: &String| self.by_name.get(name).ok_or_else(|| MissingPolicy(name.clone()));
        workload.authorization_policies.iter().map(find).collect()
    }

    /// The decision for a connection to `workload`. A policy the workload lists but the
    /// configuration lacks denies: ignoring it could drop a DENY, or the only ALLOW that turns
    /// the workload's default to deny.
    pub(crate) fn authorize(&self, workload: &Workload, attrs: &ConnectionAttrs) -> Decision {
        match self.for_workload(workload) {
            Ok(policies) => authorize(&policies, attrs),
            Err(MissingPolicy(policy)) => Decision::Deny { by: DenyReason::MissingPolicy { policy } },
        }
    }
}

/// What a node proxy did with the L7 parts, which the control plane has already applied.
fn l7_consequence(policy: &Authorization) -> &'static str {
    if policy.action == AuthorizationAction::Allow as i32 {
        "its rules that use them were dropped and never match (Istio fails closed); \
         use a waypoint to enforce them"
    } else {
        "its rules are enforced without them, so they match more connections than written; \
         use a waypoint to enforce them"
    }
}

/// The `Authorization` resources of a pushed configuration, by resource name.
pub(crate) fn authorizations(resources: &ResourceSet) -> BTreeMap<String, Authorization> {
    resources
        .of_type(ResourceType::Authorization)
        .filter_map(|r| match &r.kind {
            Some(Kind::Authorization(a)) => Some((r.name.clone(), a.clone())),
            _ => None,
        })
        .collect()
}
