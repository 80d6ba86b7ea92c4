//! The `Policies` view: lookup by the names a workload lists, failing closed on a missing one,
//! warning once per policy with L7 attributes, and `ConnectionAttrs` from a peer identity.

use std::{collections::BTreeMap, net::IpAddr};

use ambit_common::{
    api::v1::{Resource, Update, Workload, resource::Kind},
    discovery::ResourceSet,
};

use super::*;
use crate::policy::{MissingPolicy, Policies, authorizations, policy_name};

fn by_name(policies: Vec<Authorization>) -> BTreeMap<String, Authorization> {
    policies.into_iter().map(|p| (policy_name(&p), p)).collect()
}

fn workload(policies: &[&str]) -> Workload {
    Workload {
        namespace: NS.into(),
        name: "web".into(),
        authorization_policies: policies.iter().map(|p| (*p).into()).collect(),
        ..Workload::default()
    }
}

#[test]
fn for_workload_follows_the_workloads_list() {
    let view = Policies::default().update(by_name(vec![
        allow("a", any_rule()),
        deny("d", vec![from(vec![namespaces(&["bar"])])]),
        allow("unrelated", vec![]),
    ]));
    let names = |w: &Workload| view.for_workload(w).map(|ps| ps.iter().map(|p| policy_name(p)).collect::<Vec<_>>());
    assert_eq!(names(&workload(&["foo/a", "foo/d"])), Ok(vec!["foo/a".to_owned(), "foo/d".to_owned()]));
    assert_eq!(names(&workload(&[])), Ok(vec![]));
    let w = workload(&["foo/a", "foo/d"]);
    assert_eq!(view.authorize(&w, &mtls(ADMIN)), denied_by("foo/d"));
    assert_eq!(view.authorize(&w, &mtls(SLEEP)), allowed_by("foo/a"));
    assert!(view.authorize(&workload(&[]), &plain()).is_allowed(), "unrelated policies do not apply");
}

#[test]
fn a_listed_policy_missing_from_the_configuration_denies() {
    let view = Policies::default().update(by_name(vec![allow("a", any_rule())]));
    let w = workload(&["foo/a", "foo/gone"]);
    assert_eq!(view.for_workload(&w), Err(MissingPolicy("foo/gone".into())));
    let decision = view.authorize(&w, &mtls(SLEEP));
    assert_eq!(decision, Decision::Deny { by: DenyReason::MissingPolicy { policy: "foo/gone".into() } });
    assert!(!decision.is_allowed());
}

#[test]
fn l7_policies_are_reported_once() {
    let l7 = |p: Authorization| Authorization { has_l7: true, ..p };
    let first = Policies::default().update(by_name(vec![l7(allow("a", vec![])), deny("d", any_rule())]));
    let names = |next: &Policies, previous: &Policies| next.newly_l7(previous).map(policy_name).collect::<Vec<_>>();
    assert_eq!(names(&first, &Policies::default()), ["foo/a"]);
    let same = first.update(by_name(vec![l7(allow("a", vec![])), deny("d", any_rule())]));
    assert!(names(&same, &first).is_empty(), "no second warning for the same policy");
    let gained = same.update(by_name(vec![l7(allow("a", vec![])), l7(deny("d", any_rule()))]));
    assert_eq!(names(&gained, &same), ["foo/d"]);
}

#[test]
fn deny_reasons_say_what_matched() {
    let texts = [
        denied_by("foo/d"),
        not_allowed(&["foo/a", "foo/b"]),
        Decision::Deny { by: DenyReason::MissingPolicy { policy: "foo/gone".into() } },
    ]
    .map(|d| match d {
        Decision::Deny { by } => by.to_string(),
        Decision::Allow { .. } => String::new(),
    });
    assert_eq!(texts[0], "denied by DENY policy foo/d");
    assert_eq!(texts[1], "no ALLOW policy matched (policies: foo/a, foo/b)");
    assert!(texts[2].starts_with("authorization policy foo/gone applies to the workload"), "{}", texts[2]);
}

#[test]
fn connection_attributes_from_the_peer_identity() {
    let src = IpAddr::from([10, 1, 2, 3]);
    let with = |principal| ConnectionAttrs::new(src, principal, destination());
    let a = with(Some("spiffe://cluster.local/ns/shop/sa/web"));
    assert_eq!(a.source_principal.as_deref(), Some("cluster.local/ns/shop/sa/web"));
    assert_eq!(a.source_namespace.as_deref(), Some("shop"));
    assert_eq!((a.destination_ip, a.destination_port), (destination().ip(), 8080));
    let odd = with(Some("cluster.local/workload/shop"));
    assert_eq!((odd.source_principal.as_deref(), odd.source_namespace), (Some("cluster.local/workload/shop"), None));
    assert_eq!(with(Some("spiffe://")), with(None), "an empty identity is no identity");
    assert_eq!((with(None).source_principal, with(None).source_namespace), (None, None));
}

#[test]
fn authorizations_come_from_the_pushed_configuration() {
    let resource = |p: Authorization| Resource { name: policy_name(&p), kind: Some(Kind::Authorization(p)) };
    let update = Update {
        version: 1,
        full: true,
        upserts: vec![resource(allow("a", any_rule())), resource(deny("d", vec![]))],
        ..Update::default()
    };
    let set = ResourceSet::default().apply(update).expect("valid update");
    let found = authorizations(&set);
    assert_eq!(found.keys().map(String::as_str).collect::<Vec<_>>(), ["foo/a", "foo/d"]);
    assert_eq!(found["foo/a"], allow("a", any_rule()));
}
