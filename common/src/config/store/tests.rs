use super::*;
use crate::config::{kind::Kind, parse::parse_documents};

fn dr(name: &str, ns: &str, host: &str, subsets: &[&str]) -> String {
    let subsets: Vec<String> = subsets.iter().map(|s| format!("{{name: {s}}}")).collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{host: {host}, subsets: [{}]}}\n",
        subsets.join(", ")
    )
}

fn vs(name: &str, ns: &str, host: &str, subset: &str, weight_note: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}, annotations: {{note: \"{weight_note}\"}}}}\nspec: {{hosts: [{host}], http: [{{route: [{{destination: {{host: {host}, subset: {subset}}}}}]}}]}}\n"
    )
}

fn read(files: &[(&str, &[String])]) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for (name, docs) in files {
        out.extend(parse_documents(&docs.join("---\n"), name));
    }
    out
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(kind, ns, name)
}

fn note(s: &Snapshot, name: &str) -> Option<String> {
    s.get(&key(Kind::VirtualService, "bookinfo", name)).map(|o| o.meta().annotations["note"].clone())
}

#[test]
fn versions_move_only_when_the_config_changes() {
    let mut store = ConfigStore::new();
    assert_eq!(store.snapshot().version(), 0);
    let files = [("a.yaml", &[dr("reviews", "bookinfo", "reviews", &["v1"])][..])];
    assert_eq!(store.apply(read(&files)).version(), 1);
    assert_eq!(store.apply(read(&files)).version(), 1);
    assert!(store.apply(ParseOutcome::default()).is_empty());
    assert_eq!(store.snapshot().version(), 2);
}

#[test]
fn an_invalid_new_version_keeps_the_last_good_one() {
    let mut store = ConfigStore::new();
    let good = [dr("reviews", "bookinfo", "reviews", &["v1"]), vs("reviews", "bookinfo", "reviews", "v1", "first")];
    let before = store.apply(read(&[("a.yaml", &good[..])]));
    let bad = [
        good[0].clone(),
        vs("reviews", "bookinfo", "reviews", "v1", "second").replace("hosts: [reviews]", "hosts: []"),
    ];
    let after = store.apply(read(&[("a.yaml", &bad[..])]));
    assert_eq!(note(&after, "reviews").as_deref(), Some("first"));
    assert_eq!(after.version(), before.version());
    let r = store.rejections();
    assert_eq!(r.len(), 1);
    assert!(r[0].last_good_kept);
    assert!(r[0].error.to_string().starts_with("VirtualService/bookinfo/reviews: spec.hosts"));
    // Fixed: the new version takes over and the rejection is gone.
    let fixed = [good[0].clone(), vs("reviews", "bookinfo", "reviews", "v1", "third")];
    assert_eq!(note(&store.apply(read(&[("a.yaml", &fixed[..])])), "reviews").as_deref(), Some("third"));
    assert!(store.rejections().is_empty());
}

#[test]
fn objects_that_disappear_are_removed_unless_their_source_is_unreadable() {
    let mut store = ConfigStore::new();
    let a = [dr("a", "bookinfo", "a", &[])];
    let b = [dr("b", "bookinfo", "b", &[])];
    store.apply(read(&[("a.yaml", &a[..]), ("b.yaml", &b[..])]));
    let broken = ["key: [unclosed\n".to_string()];
    let s = store.apply(read(&[("a.yaml", &broken[..])]));
    assert!(
        s.get(&key(Kind::DestinationRule, "bookinfo", "a")).is_some(),
        "a.yaml could not be read: keep what it had"
    );
    assert!(s.get(&key(Kind::DestinationRule, "bookinfo", "b")).is_none(), "b.yaml is gone: its objects go");
    assert_eq!(store.rejections().len(), 1);
    assert!(!store.rejections()[0].last_good_kept);
}

#[test]
fn a_subset_that_disappears_rejects_the_virtual_service_but_keeps_it() {
    let mut store = ConfigStore::new();
    let v = vs("reviews", "bookinfo", "reviews", "v2", "first");
    store.apply(read(&[("a.yaml", &[dr("reviews", "bookinfo", "reviews", &["v1", "v2"]), v.clone()][..])]));
    let s = store.apply(read(&[("a.yaml", &[dr("reviews", "bookinfo", "reviews", &["v1"]), v][..])]));
    assert_eq!(note(&s, "reviews").as_deref(), Some("first"));
    let r = &store.rejections()[0];
    assert!(r.last_good_kept);
    assert!(r.error.to_string().contains("spec.http[0].route[0].destination.subset: subset \"v2\""), "{}", r.error);
    // A brand-new VirtualService with a missing subset has nothing to fall back to.
    let s = store.apply(read(&[("a.yaml", &[vs("other", "bookinfo", "reviews", "v9", "x")][..])]));
    assert!(note(&s, "other").is_none());
    assert!(!store.rejections()[0].last_good_kept);
}

#[test]
fn subsets_are_found_across_namespaces_only_when_exported() {
    let mut store = ConfigStore::new();
    let exported = dr("reviews", "b", "reviews", &["v1"]);
    let private = exported.replace("subsets:", "exportTo: [\".\"], subsets:");
    let user = vs("r", "a", "reviews.b.svc.cluster.local", "v1", "n");
    store.apply(read(&[("x.yaml", &[exported, user.clone()][..])]));
    assert!(store.rejections().is_empty(), "{:?}", store.rejections());
    store.apply(read(&[("x.yaml", &[private, user][..])]));
    assert_eq!(store.rejections().len(), 1);
    // A wildcard DestinationRule covers the host too.
    store.apply(read(&[(
        "x.yaml",
        &[dr("all", "a", "\"*.b.svc.cluster.local\"", &["v1"]), vs("r", "a", "reviews.b.svc.cluster.local", "v1", "n")]
            [..],
    )]));
    assert!(store.rejections().is_empty(), "{:?}", store.rejections());
}

#[test]
fn the_destination_rule_in_force_wins_a_host_conflict() {
    let mut store = ConfigStore::new();
    store.apply(read(&[("a.yaml", &[dr("zeta", "bookinfo", "reviews", &["v1"])][..])]));
    let both = [
        dr("zeta", "bookinfo", "reviews", &["v1"]),
        dr("alpha", "bookinfo", "reviews.bookinfo.svc.cluster.local", &["v2"]),
    ];
    let s = store.apply(read(&[("a.yaml", &both[..])]));
    assert!(s.get(&key(Kind::DestinationRule, "bookinfo", "zeta")).is_some());
    assert!(s.get(&key(Kind::DestinationRule, "bookinfo", "alpha")).is_none());
    assert!(store.rejections()[0].error.to_string().starts_with("DestinationRule/bookinfo/alpha: spec.host"));
    // Both new: the name that sorts first wins. Different namespaces do not conflict.
    let mut fresh = ConfigStore::new();
    let s =
        fresh.apply(read(&[("a.yaml", &[dr("b", "x", "r", &[]), dr("a", "x", "r", &[]), dr("c", "y", "r", &[])][..])]));
    let names: Vec<_> = s.destination_rules().map(|d| d.meta.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn a_conflicting_destination_rule_falls_back_to_its_last_good_host() {
    let mut store = ConfigStore::new();
    store.apply(read(&[("a.yaml", &[dr("a", "x", "reviews", &[]), dr("b", "x", "ratings", &[])][..])]));
    let s = store.apply(read(&[("a.yaml", &[dr("a", "x", "reviews", &[]), dr("b", "x", "reviews", &[])][..])]));
    let hosts: Vec<_> = s.destination_rules().map(|d| d.host.as_str()).collect();
    assert_eq!(hosts, ["reviews", "ratings"]);
    assert!(store.rejections()[0].last_good_kept);
}

#[test]
fn duplicates_name_both_documents_and_keep_the_last_good_version() {
    let mut store = ConfigStore::new();
    let one = vs("reviews", "bookinfo", "reviews", "v1", "first");
    let d = dr("reviews", "bookinfo", "reviews", &["v1"]);
    store.apply(read(&[("a.yaml", &[d.clone(), one][..])]));
    let s = store.apply(read(&[
        ("a.yaml", &[d, vs("reviews", "bookinfo", "reviews", "v1", "second")][..]),
        ("b.yaml", &[vs("reviews", "bookinfo", "reviews", "v1", "third")][..]),
    ]));
    assert_eq!(note(&s, "reviews").as_deref(), Some("first"));
    let e = store.rejections()[0].error.to_string();
    assert!(e.contains("a.yaml document 2") && e.contains("b.yaml document 1"), "{e}");
}

#[test]
fn snapshots_are_immutable_and_cheap_to_share() {
    let mut store = ConfigStore::new();
    let old = store.apply(read(&[("a.yaml", &[dr("a", "x", "r", &[])][..])]));
    let shared = old.clone();
    store.apply(ParseOutcome::default());
    assert_eq!((shared.version(), shared.len()), (1, 1));
    assert!(store.snapshot().is_empty());
    let arc = shared.get_arc(&key(Kind::DestinationRule, "x", "a")).unwrap();
    assert!(Arc::ptr_eq(&arc, &old.get_arc(&key(Kind::DestinationRule, "x", "a")).unwrap()));
    let json = serde_json::to_value(&shared).unwrap();
    assert_eq!(json["objects"][0]["kind"], "DestinationRule");
}

#[test]
fn short_names_resolve_under_the_clusters_own_domain() {
    // The DestinationRule names the host fully qualified in a cluster whose DNS domain is
    // corp.internal; the VirtualService uses the short name.
    let files = [(
        "a.yaml",
        &[
            dr("reviews", "bookinfo", "reviews.bookinfo.svc.corp.internal", &["v2"]),
            vs("reviews", "bookinfo", "reviews", "v2", "first"),
        ][..],
    )];
    let mut store = ConfigStore::with_cluster_domain("corp.internal");
    let s = store.apply(read(&files));
    assert!(store.rejections().is_empty(), "{:?}", store.rejections());
    assert_eq!(note(&s, "reviews").as_deref(), Some("first"));
    // Under the default domain the same names are different hosts: the subset is missing.
    let mut default = ConfigStore::new();
    default.apply(read(&files));
    assert_eq!(default.rejections().len(), 1);
    assert!(default.rejections()[0].error.to_string().contains("host reviews.bookinfo.svc.cluster.local"));
    // Two rules for one host, one by its short name and one fully qualified, conflict only
    // under the domain that makes them the same host.
    let two = [(
        "a.yaml",
        &[
            dr("by-short-name", "bookinfo", "reviews", &["v1"]),
            dr("fully-qualified", "bookinfo", "reviews.bookinfo.svc.corp.internal", &["v2"]),
        ][..],
    )];
    let mut store = ConfigStore::with_cluster_domain("corp.internal");
    let s = store.apply(read(&two));
    assert_eq!(store.rejections().len(), 1, "{:?}", store.rejections());
    assert!(
        store.rejections()[0].error.to_string().contains("host reviews.bookinfo.svc.corp.internal already has"),
        "{}",
        store.rejections()[0].error
    );
    assert!(s.get(&key(Kind::DestinationRule, "bookinfo", "by-short-name")).is_some());
    assert!(s.get(&key(Kind::DestinationRule, "bookinfo", "fully-qualified")).is_none());
    let mut default = ConfigStore::new();
    default.apply(read(&two));
    assert!(default.rejections().is_empty(), "{:?}", default.rejections());
}
