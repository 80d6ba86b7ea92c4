use ambit_common::config::Kind;
use serde_json::json;

use super::*;

fn cache(kind: Kind) -> KindCache {
    KindCache::new(Resource::all().into_iter().find(|r| r.kind == kind).unwrap())
}

fn pod(name: &str, rv: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv},
        "spec": {"nodeName": "node-1"}, "status": {"podIP": "10.0.0.1"}
    }))
    .unwrap()
}

fn names(cache: &KindCache) -> Vec<String> {
    let mut out = ParseOutcome::default();
    cache.extend_reading(&mut out);
    out.objects.iter().map(|o| o.object.meta().name.clone()).collect()
}

fn arc_of(cache: &KindCache, name: &str) -> Arc<Converted> {
    cache.objects[&("shop".to_string(), name.to_string())].converted.clone()
}

fn list(cache: &mut KindCache, pods: Vec<DynamicObject>) -> bool {
    assert!(!cache.apply(Event::Init));
    for p in pods {
        assert!(!cache.apply(Event::InitApply(p)), "nothing changes before InitDone");
    }
    cache.apply(Event::InitDone)
}

#[test]
fn relist_replaces_the_set_and_reuses_unchanged_conversions() {
    let mut c = cache(Kind::Pod);
    assert_eq!(c.listing(), Listing::Pending);
    assert!(list(&mut c, vec![pod("a", "1"), pod("b", "2")]));
    assert_eq!(c.listing(), Listing::Listed);
    let a = arc_of(&c, "a");

    // The same objects at the same versions: no change, nothing re-converted.
    assert!(!list(&mut c, vec![pod("a", "1"), pod("b", "2")]));
    assert!(Arc::ptr_eq(&a, &arc_of(&c, "a")));

    // b deleted and c added while the watch was down: the relist says so.
    assert!(list(&mut c, vec![pod("a", "1"), pod("c", "5")]));
    assert_eq!(names(&c), ["a", "c"]);
    assert!(Arc::ptr_eq(&a, &arc_of(&c, "a")));
}

#[test]
fn a_relist_in_progress_keeps_the_old_set_in_force() {
    let mut c = cache(Kind::Pod);
    list(&mut c, vec![pod("a", "1"), pod("b", "2")]);
    c.apply(Event::Init);
    c.apply(Event::InitApply(pod("a", "1")));
    assert_eq!(names(&c), ["a", "b"], "until InitDone the previous list stands");
}

#[test]
fn apply_and_delete_edit_single_objects() {
    let mut c = cache(Kind::Pod);
    list(&mut c, vec![pod("a", "1")]);
    assert!(c.apply(Event::Apply(pod("b", "3"))));
    assert!(!c.apply(Event::Apply(pod("b", "3"))), "a redelivered version changes nothing");
    let b = arc_of(&c, "b");
    assert!(c.apply(Event::Apply(pod("b", "4"))));
    assert!(!Arc::ptr_eq(&b, &arc_of(&c, "b")), "a new version is converted again");
    assert!(c.apply(Event::Delete(pod("a", "5"))));
    assert!(!c.apply(Event::Delete(pod("a", "5"))));
    assert_eq!(names(&c), ["b"]);
}

#[test]
fn unavailable_counts_as_listed_and_empty() {
    let mut c = cache(Kind::VirtualService);
    assert!(c.unavailable(), "the first verdict changes readiness");
    assert_eq!(c.listing(), Listing::Unavailable);
    assert!(!c.unavailable());
    let mut p = cache(Kind::Pod);
    list(&mut p, vec![pod("a", "1")]);
    assert!(p.unavailable(), "dropping objects is a change");
    assert!(names(&p).is_empty());
}
