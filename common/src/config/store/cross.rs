//! Checks that need more than one object.
//!
//! - **Subsets.** A VirtualService route or mirror that names a subset must find it in a
//!   DestinationRule for the same host, the way `istioctl analyze` reports IST0101
//!   ("Referenced host+subset in destinationrule not found"). Hosts are compared fully
//!   qualified: each object's short names resolve in its own namespace, under the store's
//!   cluster domain ([`hosts::resolve`]),
//!   a DestinationRule host may be a wildcard, and only DestinationRules visible to the
//!   VirtualService's namespace (their `exportTo`) count. The VirtualService is rejected and
//!   keeps its last good version.
//! - **One DestinationRule per host and namespace.** Istio merges several DestinationRules for
//!   the same host in one namespace (subsets are combined, the first rule's traffic policy
//!   wins). Ambit does not merge: it keeps the rule already in force (or, when both are new,
//!   the one whose name sorts first) and rejects the other, saying to combine them. Rules
//!   with a `workloadSelector` apply to different clients and are not compared.

use std::collections::BTreeMap;

use super::Entry;
use crate::config::{
    error::{ConfigError, ObjectRef},
    hosts,
    kind::Kind,
    model::{Destination, DestinationRule, Object, RouteAction, VirtualService},
};

pub(super) fn check(
    candidate: &mut BTreeMap<ObjectRef, Entry>,
    previous: &BTreeMap<ObjectRef, Entry>,
    cluster_domain: &str,
    errors: &mut Vec<ConfigError>,
) {
    destination_rule_conflicts(candidate, previous, cluster_domain, errors);
    missing_subsets(candidate, previous, cluster_domain, errors);
}

fn dr_of(entry: &Entry) -> Option<&DestinationRule> {
    match &*entry.object {
        Object::DestinationRule(dr) => Some(dr),
        _ => None,
    }
}

/// Puts the last good version of `key` back, or removes it when there is none (or when the
/// last good version is what is being rejected).
fn fall_back(key: &ObjectRef, candidate: &mut BTreeMap<ObjectRef, Entry>, previous: &BTreeMap<ObjectRef, Entry>) {
    let current = candidate.get(key).map(|e| e.object.clone());
    match previous.get(key) {
        Some(p) if current.is_none_or(|c| !std::sync::Arc::ptr_eq(&c, &p.object)) => {
            candidate.insert(key.clone(), p.clone());
        }
        _ => {
            candidate.remove(key);
        }
    }
}

fn destination_rule_conflicts(
    candidate: &mut BTreeMap<ObjectRef, Entry>,
    previous: &BTreeMap<ObjectRef, Entry>,
    cluster_domain: &str,
    errors: &mut Vec<ConfigError>,
) {
    // Each round either changes nothing or moves a loser to its last good version or out, so
    // this ends within a couple of rounds per DestinationRule.
    for _ in 0..=candidate.len() {
        let mut by_host: BTreeMap<(String, String), Vec<ObjectRef>> = BTreeMap::new();
        for (key, entry) in candidate.iter().filter(|(k, _)| k.kind == Kind::DestinationRule) {
            if let Some(dr) = dr_of(entry).filter(|dr| dr.workload_selector.is_none()) {
                let host = hosts::resolve(&dr.host, &key.namespace, cluster_domain);
                by_host.entry((key.namespace.clone(), host)).or_default().push(key.clone());
            }
        }
        let Some(((namespace, host), keys)) = by_host.into_iter().find(|(_, keys)| keys.len() > 1) else { return };
        let in_force = |k: &ObjectRef| {
            previous
                .get(k)
                .and_then(dr_of)
                .is_some_and(|dr| hosts::resolve(&dr.host, &k.namespace, cluster_domain) == host)
        };
        let winner = keys.iter().find(|k| in_force(k)).unwrap_or(&keys[0]).clone();
        for loser in keys.iter().filter(|k| **k != winner) {
            let origin = candidate.get(loser).map(|e| e.origin.clone());
            let mut error = ConfigError::new(
                Some(loser.clone()),
                "spec.host",
                format!(
                    "host {host} already has {winner} in namespace {namespace}; Istio would merge the two rules, \
                     Ambit does not — move this rule's subsets and policies into {}",
                    winner.name
                ),
            );
            error.origin = origin.map(Box::new);
            errors.push(error);
            fall_back(loser, candidate, previous);
        }
    }
}

/// The subsets defined for `host` by DestinationRules visible in `namespace`.
struct SubsetIndex<'a> {
    rules: Vec<(String, &'a DestinationRule)>,
}

impl<'a> SubsetIndex<'a> {
    fn new(candidate: &'a BTreeMap<ObjectRef, Entry>, cluster_domain: &str) -> Self {
        let rules = candidate
            .iter()
            .filter_map(|(k, e)| dr_of(e).map(|dr| (hosts::resolve(&dr.host, &k.namespace, cluster_domain), dr)))
            .collect();
        Self { rules }
    }

    /// `Err` holds the subsets that matching rules do define, for the message.
    fn find(&self, host: &str, subset: &str, namespace: &str) -> Result<(), Vec<String>> {
        let mut known = Vec::new();
        for (dr_host, dr) in &self.rules {
            let visible = dr.meta.namespace == namespace || dr.export_to.visible_to(namespace);
            if !visible || !hosts::matches(dr_host, host) {
                continue;
            }
            if dr.subset(subset).is_some() {
                return Ok(());
            }
            known.extend(dr.subsets.iter().map(|s| s.name.clone()));
        }
        Err(known)
    }
}

/// Every destination of a VirtualService that names a subset, with its field path.
fn subset_references(vs: &VirtualService) -> Vec<(String, &Destination)> {
    let mut out = Vec::new();
    for (i, route) in vs.http.iter().enumerate() {
        if let RouteAction::Route(dests) = &route.action {
            for (j, d) in dests.iter().enumerate() {
                out.push((format!("spec.http[{i}].route[{j}].destination.subset"), &d.destination));
            }
        }
        let mut listed = 0;
        for m in &route.mirrors {
            let path = if m.from_mirror_field {
                format!("spec.http[{i}].mirror.subset")
            } else {
                listed += 1;
                format!("spec.http[{i}].mirrors[{}].destination.subset", listed - 1)
            };
            out.push((path, &m.destination));
        }
    }
    for (i, route) in vs.tcp.iter().enumerate() {
        for (j, d) in route.route.iter().enumerate() {
            out.push((format!("spec.tcp[{i}].route[{j}].destination.subset"), &d.destination));
        }
    }
    out.retain(|(_, d)| d.subset.is_some());
    out
}

fn missing_subsets(
    candidate: &mut BTreeMap<ObjectRef, Entry>,
    previous: &BTreeMap<ObjectRef, Entry>,
    cluster_domain: &str,
    errors: &mut Vec<ConfigError>,
) {
    let mut rejected = Vec::new();
    {
        let index = SubsetIndex::new(candidate, cluster_domain);
        for (key, entry) in candidate.iter().filter(|(k, _)| k.kind == Kind::VirtualService) {
            let Object::VirtualService(vs) = &*entry.object else { continue };
            for (field, dest) in subset_references(vs) {
                let Some(subset) = &dest.subset else { continue };
                let host = hosts::resolve(&dest.host, &key.namespace, cluster_domain);
                if let Err(known) = index.find(&host, subset, &key.namespace) {
                    let message = if known.is_empty() {
                        format!(
                            "subset {subset:?} of host {host} is not defined: no DestinationRule for that host \
                             defines subsets; add one with subset {subset:?}, or remove the subset"
                        )
                    } else {
                        format!(
                            "subset {subset:?} of host {host} is not defined; DestinationRules for that host \
                             define {}; add {subset:?} there or use one of those",
                            known.join(", ")
                        )
                    };
                    let error = ConfigError::new(Some(key.clone()), field, message);
                    rejected.push((key.clone(), error.with_origin(entry.origin.clone())));
                    break;
                }
            }
        }
    }
    for (key, error) in rejected {
        errors.push(error);
        // The last good version may itself name the subset (when the DestinationRule changed,
        // not the VirtualService); it stays in force anyway, as it was valid when applied, and
        // requests to the missing subset fail until one is defined again.
        match previous.get(&key) {
            Some(p) => candidate.insert(key, p.clone()),
            None => candidate.remove(&key),
        };
    }
}
