use super::*;
use crate::config::model::Object;

fn kinds(outcome: &ParseOutcome) -> Vec<String> {
    outcome.objects.iter().map(|o| o.object.object_ref().to_string()).collect()
}

#[test]
fn one_bad_document_does_not_hide_the_others() {
    let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: [broken
---
apiVersion: v1
kind: Namespace
metadata: {name: c}
";
    let outcome = parse_documents(text, "ns.yaml");
    assert_eq!(kinds(&outcome), ["Namespace/a", "Namespace/c"]);
    assert_eq!(outcome.errors.len(), 1);
    let origin = outcome.errors[0].origin.clone().unwrap();
    assert_eq!((origin.document, origin.line), (2, Some(8)));
}

#[test]
fn empty_documents_and_comments_are_ignored() {
    let outcome = parse_documents("# nothing\n---\n---\n# still nothing\n---\n\n", "empty.yaml");
    assert_eq!(outcome, ParseOutcome::default());
    assert_eq!(parse_documents("", "x"), ParseOutcome::default());
}

#[test]
fn unknown_kinds_are_skipped_with_a_reason() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: bookinfo}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress}
spec: {}
---
apiVersion: networking.istio.io/v2
kind: VirtualService
metadata: {name: future}
";
    let outcome = parse_documents(text, "mixed.yaml");
    assert!(outcome.objects.is_empty() && outcome.errors.is_empty());
    let skipped: Vec<_> = outcome.skipped.iter().map(|s| (s.kind.as_str(), s.name.as_deref())).collect();
    assert_eq!(
        skipped,
        [("ConfigMap", Some("settings")), ("Gateway", Some("ingress")), ("VirtualService", Some("future"))]
    );
    assert!(outcome.skipped[1].reason.contains("not supported by Ambit"));
    assert!(outcome.skipped[2].reason.contains("networking.istio.io/v1"));
}

#[test]
fn lists_expand_and_missing_namespaces_default() {
    let text = "\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: a}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: b, namespace: other}}
- {apiVersion: v1, kind: Secret, metadata: {name: s}}
";
    let outcome = parse_documents(text, "list.yaml");
    assert_eq!(kinds(&outcome), ["ServiceAccount/default/a", "ServiceAccount/other/b"]);
    assert_eq!(outcome.objects[1].origin.item, Some(1));
    assert_eq!(outcome.skipped.len(), 1);
}

#[test]
fn kubernetes_kinds_ignore_unknown_fields_and_istio_kinds_do_not() {
    let pod = "\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ns, generation: 3}
spec:
  nodeName: node-1
  restartPolicy: Always
  containers: [{name: app, image: x, resources: {}}]
status: {podIP: 10.0.0.5, conditions: [{type: Ready}]}
";
    let outcome = parse_documents(pod, "pod.yaml");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let Object::Pod(p) = &outcome.objects[0].object else { panic!() };
    assert_eq!((p.node_name.as_deref(), p.service_account.as_str()), (Some("node-1"), "default"));
    assert_eq!(p.ips, ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]);

    // Metadata is strict for every kind: its schema is fixed, and a typo there changes meaning.
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  lables: {istio.io/dataplane-mode: ambient}\n";
    let outcome = parse_documents(ns, "ns.yaml");
    assert!(outcome.errors[0].to_string().contains("unknown field `lables`"), "{}", outcome.errors[0]);

    let pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\nspec: {mtls: {mode: STRICT, extra: 1}}\n";
    let outcome = parse_documents(pa, "pa.yaml");
    assert_eq!(
        outcome.errors[0].to_string(),
        "PeerAuthentication/default/x: spec.mtls: unknown field `extra`, expected `mode` (in pa.yaml document 1 line 4)"
    );
}

#[test]
fn documents_without_kind_are_errors() {
    let outcome = parse_documents("metadata: {name: x}\n", "x.yaml");
    assert_eq!(
        outcome.errors[0].to_string(),
        "x.yaml document 1 line 1: apiVersion: apiVersion is missing; every object needs apiVersion and kind"
    );
}

#[test]
fn status_and_server_fields_are_accepted() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: r
  namespace: ns
  uid: 123
  resourceVersion: \"42\"
  generation: 3
  creationTimestamp: null
  managedFields: [{manager: kubectl}]
spec: {host: r}
status: {observedGeneration: 3}
";
    let outcome = parse_documents(text, "dr.yaml");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_eq!(outcome.objects.len(), 1);
}
