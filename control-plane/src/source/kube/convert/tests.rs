use ambit_common::config::Object;
use serde_json::json;

use super::*;
use crate::source::kube::resources::Resource;

fn api(kind: Kind) -> ApiResource {
    Resource::all().into_iter().find(|r| r.kind == kind).unwrap().api
}

fn dynamic(value: Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

/// As the API server sends them: list items of built-in kinds carry no apiVersion or kind,
/// and metadata is full of server-set fields.
#[test]
fn list_items_without_type_fields_convert() {
    let pod = dynamic(json!({
        "metadata": {
            "name": "reviews-v1-7f9c", "namespace": "bookinfo", "uid": "0b6c", "resourceVersion": "1042",
            "creationTimestamp": "2026-01-02T10:00:00Z", "labels": {"app": "reviews", "version": "v1"},
            "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {}}}]
        },
        "spec": {"nodeName": "node-1", "serviceAccountName": "bookinfo-reviews", "containers": [{"name": "reviews", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "10.0.1.7", "podIPs": [{"ip": "10.0.1.7"}]}
    }));
    let Converted::Valid(located) = convert(Kind::Pod, &api(Kind::Pod), pod) else { panic!("valid pod") };
    assert_eq!(located.origin.source, "kubernetes:Pod/bookinfo/reviews-v1-7f9c");
    assert_eq!(located.object.object_ref(), ObjectRef::new(Kind::Pod, "bookinfo", "reviews-v1-7f9c"));

    let ns = dynamic(json!({"metadata": {"name": "bookinfo", "labels": {"istio.io/dataplane-mode": "ambient"}}}));
    let Converted::Valid(located) = convert(Kind::Namespace, &api(Kind::Namespace), ns) else { panic!("valid ns") };
    assert_eq!(located.origin.source, "kubernetes:Namespace/bookinfo");
    assert!(matches!(located.object, Object::Namespace(_)));
}

/// Istio kinds are strict: server-set metadata is fine, a typo is an error with its path.
#[test]
fn istio_typo_names_object_field_and_fix() {
    let vs = |route: Value| {
        dynamic(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "bookinfo", "generation": 3, "resourceVersion": "77",
                         "uid": "9f1e", "creationTimestamp": "2026-01-02T10:00:00Z",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"hosts": ["reviews"], "http": [{"route": [route]}]}
        }))
    };
    let good = vs(json!({"destination": {"host": "reviews", "subset": "v1"}}));
    assert!(matches!(convert(Kind::VirtualService, &api(Kind::VirtualService), good), Converted::Valid(_)));

    let bad = vs(json!({"destination": {"host": "reviews"}, "weigth": 100}));
    let Converted::Invalid(e) = convert(Kind::VirtualService, &api(Kind::VirtualService), bad) else {
        panic!("typo must be rejected")
    };
    assert_eq!(e.object, Some(ObjectRef::new(Kind::VirtualService, "bookinfo", "reviews")));
    assert_eq!(e.field, "spec.http[0].route[0]", "the local source's path for the same typo");
    assert!(e.message.contains("did you mean `weight`?"), "{}", e.message);
    assert_eq!(e.origin.as_deref().map(|o| o.source.as_str()), Some("kubernetes:VirtualService/bookinfo/reviews"));
}

/// Validation errors (after serde) keep their object and path and gain the origin.
#[test]
fn validation_errors_get_the_origin() {
    let dr = dynamic(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "bookinfo"},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v1", "labels": {"version": "v2"}}]}
    }));
    let Converted::Invalid(e) = convert(Kind::DestinationRule, &api(Kind::DestinationRule), dr) else {
        panic!("duplicate subset must be rejected")
    };
    assert_eq!(e.object, Some(ObjectRef::new(Kind::DestinationRule, "bookinfo", "reviews")));
    assert!(e.field.starts_with("spec.subsets"), "{e}");
    assert!(e.to_string().contains("kubernetes:DestinationRule/bookinfo/reviews"), "{e}");
}

#[test]
fn wrong_types_are_errors_not_panics() {
    let svc = dynamic(json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"ports": "80"}}));
    let Converted::Invalid(e) = convert(Kind::Service, &api(Kind::Service), svc) else { panic!("bad ports") };
    assert_eq!(e.field, "spec.ports");
    assert!(e.message.contains("invalid type"), "{}", e.message);
}

#[test]
fn paths_match_the_local_source() {
    let unknown = "unknown field `weigth`, expected one of `destination`, `weight`";
    assert_eq!(field_path("spec.http[0].weigth".into(), unknown), "spec.http[0]");
    assert_eq!(field_path("extra".into(), "unknown field `extra`, expected `spec`"), "");
    assert_eq!(field_path(".".into(), "missing field `spec`"), "");
    assert_eq!(field_path("spec.ports".into(), "invalid type: string \"80\", expected a sequence"), "spec.ports");
}
