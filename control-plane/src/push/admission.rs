//! Which subscriptions a caller may hold: a node proxy subscribes as its own node, a waypoint as
//! itself, and nothing else (the configuration names every workload and policy in the mesh).
//! Pure: the caller the CA established ([`Caller`]) and the scope its Hello names in, a decision
//! out.

use tonic::Status;

use super::state::Scope;
use crate::ca::authz::Caller;

/// What a subscription names, as refusals say it: `node N`, `waypoint NS/NAME`.
pub fn describe(scope: &Scope) -> String {
    match scope {
        Scope::Node { name } => format!("node {name}"),
        Scope::Waypoint { namespace, name } => format!("waypoint {namespace}/{name}"),
    }
}

/// Whether `caller` may subscribe as `scope`; the refusal says what the credential proves, what
/// was asked, and what to check.
pub fn admit(caller: &Caller, scope: &Scope) -> Result<(), Status> {
    let fix = match (caller, scope) {
        (Caller::Node(node), Scope::Node { name }) if node.name() == name => return Ok(()),
        (Caller::Waypoint(w), Scope::Waypoint { namespace, name })
            if w.name().namespace == *namespace && w.name().name == *name =>
        {
            return Ok(());
        }
        (Caller::Node(_), Scope::Node { .. }) => {
            "a node proxy subscribes as its own node (check its --node-name and --ca-token-file)"
        }
        (Caller::Waypoint(_), Scope::Waypoint { .. }) => {
            "a waypoint subscribes as itself, with its own credential (check its namespace, gateway name and token)"
        }
        (Caller::Node(_), Scope::Waypoint { .. }) => {
            "a waypoint subscribes with its own credential (its `waypoint/<namespace>/<gateway name>` entry, or \
             its pod's projected token), not a node's"
        }
        (Caller::Waypoint(_), Scope::Node { .. }) => "a waypoint's credential proves no node: it subscribes as itself",
    };
    Err(Status::permission_denied(format!(
        "the credential proves {caller}, but the subscription names {}: {fix}",
        describe(scope)
    )))
}

#[cfg(test)]
mod tests {
    use ambit_common::config::Snapshot;

    use super::*;
    use crate::ca::authn::{Claim, WaypointName};

    fn node(name: &str) -> Caller {
        crate::ca::authz::resolve_caller(Claim::Node(name.into()), &Snapshot::default()).unwrap()
    }

    fn waypoint(namespace: &str, name: &str) -> Caller {
        let claim = Claim::Waypoint(WaypointName { namespace: namespace.into(), name: name.into() });
        crate::ca::authz::resolve_caller(claim, &Snapshot::default()).unwrap()
    }

    fn node_scope(name: &str) -> Scope {
        Scope::Node { name: name.into() }
    }

    fn waypoint_scope(namespace: &str, name: &str) -> Scope {
        Scope::Waypoint { namespace: namespace.into(), name: name.into() }
    }

    #[test]
    fn each_caller_subscribes_as_itself_only() {
        assert!(admit(&node("node-0"), &node_scope("node-0")).is_ok());
        assert!(admit(&waypoint("shop", "waypoint"), &waypoint_scope("shop", "waypoint")).is_ok());
        let refusals = [
            (
                node("node-0"),
                node_scope("node-1"),
                "the credential proves node node-0, but the subscription names node node-1",
            ),
            (
                node("node-0"),
                waypoint_scope("shop", "waypoint"),
                "the credential proves node node-0, but the subscription names waypoint shop/waypoint",
            ),
            (
                waypoint("shop", "waypoint"),
                node_scope("node-0"),
                "the credential proves waypoint shop/waypoint, but the subscription names node node-0",
            ),
            (
                waypoint("shop", "waypoint"),
                waypoint_scope("shop", "other"),
                "the credential proves waypoint shop/waypoint, but the subscription names waypoint shop/other",
            ),
            (
                waypoint("shop", "waypoint"),
                waypoint_scope("bank", "waypoint"),
                "the credential proves waypoint shop/waypoint, but the subscription names waypoint bank/waypoint",
            ),
        ];
        for (caller, scope, message) in refusals {
            let status = admit(&caller, &scope).unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(status.message().starts_with(message), "{}", status.message());
        }
    }
}
