//! PeerAuthentication precedence: mesh < namespace < workload, UNSET inherits, DISABLE is
//! PERMISSIVE, port-level overrides from the workload policy only.

use std::collections::BTreeMap;

use ambit_common::api::v1::MtlsMode;

use super::{compiled, namespace, pod, workload};

const STRICT: MtlsMode = MtlsMode::Strict;
const PERMISSIVE: MtlsMode = MtlsMode::Permissive;

/// A PeerAuthentication; `selector` and `ports` are YAML flow content, empty for none.
fn peer_auth(namespace: &str, name: &str, mode: &str, selector: &str, ports: &str) -> String {
    let mut doc = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  mtls: {{mode: {mode}}}\n"
    );
    if !selector.is_empty() {
        doc.push_str(&format!("  selector: {{matchLabels: {{{selector}}}}}\n"));
    }
    if !ports.is_empty() {
        doc.push_str(&format!("  portLevelMtls: {{{ports}}}\n"));
    }
    doc + "---\n"
}

/// Pods `a` (app: a) and `b` (app: b) in `shop`, one pod `sys` in the root namespace.
fn cluster(policies: &[String]) -> String {
    let mut yaml = [
        namespace("shop", ""),
        namespace("istio-system", ""),
        pod("shop", "a", "10.0.0.1", "app: a"),
        pod("shop", "b", "10.0.0.2", "app: b"),
        pod("istio-system", "sys", "10.0.0.3", "app: a"),
    ]
    .concat();
    yaml.extend(policies.iter().map(String::as_str));
    yaml
}

/// (mode, port modes) of pod `name`.
fn modes(policies: &[String], name: &str) -> (MtlsMode, BTreeMap<u32, MtlsMode>) {
    let out = compiled(&cluster(policies));
    let w = workload(&out, name);
    let ports = w.port_mtls.iter().map(|(p, m)| (*p, MtlsMode::try_from(*m).unwrap())).collect();
    (MtlsMode::try_from(w.mtls).unwrap(), ports)
}

fn mode(policies: &[String], name: &str) -> MtlsMode {
    modes(policies, name).0
}

#[test]
fn default_is_permissive() {
    assert_eq!(modes(&[], "a"), (PERMISSIVE, BTreeMap::new()));
}

#[test]
fn mesh_wide_strict_applies_everywhere() {
    let p = [peer_auth("istio-system", "default", "STRICT", "", "")];
    assert_eq!((mode(&p, "a"), mode(&p, "b"), mode(&p, "sys")), (STRICT, STRICT, STRICT));
}

#[test]
fn namespace_overrides_mesh_and_unset_inherits() {
    let permissive =
        [peer_auth("istio-system", "default", "STRICT", "", ""), peer_auth("shop", "default", "PERMISSIVE", "", "")];
    assert_eq!((mode(&permissive, "a"), mode(&permissive, "sys")), (PERMISSIVE, STRICT));
    let unset = [peer_auth("istio-system", "default", "STRICT", "", ""), peer_auth("shop", "default", "UNSET", "", "")];
    assert_eq!(mode(&unset, "a"), STRICT);
}

#[test]
fn workload_overrides_namespace_for_the_pods_it_selects() {
    let p = [peer_auth("shop", "default", "STRICT", "", ""), peer_auth("shop", "a-only", "PERMISSIVE", "app: a", "")];
    assert_eq!((mode(&p, "a"), mode(&p, "b")), (PERMISSIVE, STRICT));
    let unset = [peer_auth("shop", "default", "STRICT", "", ""), peer_auth("shop", "a-only", "UNSET", "app: a", "")];
    assert_eq!(mode(&unset, "a"), STRICT, "UNSET at workload level inherits the namespace's");
}

#[test]
fn disable_is_permissive() {
    let p = [peer_auth("istio-system", "default", "STRICT", "", ""), peer_auth("shop", "default", "DISABLE", "", "")];
    assert_eq!(mode(&p, "a"), PERMISSIVE);
    let port = [peer_auth("shop", "a", "STRICT", "app: a", "'8080': {mode: DISABLE}")];
    assert_eq!(modes(&port, "a"), (STRICT, BTreeMap::from([(8080, PERMISSIVE)])));
}

#[test]
fn port_level_overrides_by_target_port() {
    let p = [
        peer_auth("shop", "default", "PERMISSIVE", "", ""),
        peer_auth("shop", "a", "UNSET", "app: a", "'8080': {mode: STRICT}, '9090': {mode: UNSET}"),
    ];
    assert_eq!(modes(&p, "a"), (PERMISSIVE, BTreeMap::from([(8080, STRICT)])), "an UNSET port inherits");
    assert_eq!(modes(&p, "b"), (PERMISSIVE, BTreeMap::new()));
    let strict_exempt = [peer_auth("shop", "a", "STRICT", "app: a", "'15021': {mode: PERMISSIVE}")];
    assert_eq!(modes(&strict_exempt, "a"), (STRICT, BTreeMap::from([(15021, PERMISSIVE)])));
}

#[test]
fn competing_policies_resolve_by_name() {
    let namespace_wide =
        [peer_auth("shop", "b-second", "PERMISSIVE", "", ""), peer_auth("shop", "a-first", "STRICT", "", "")];
    assert_eq!(mode(&namespace_wide, "a"), STRICT);
    let selectors = [
        peer_auth("shop", "z-late", "PERMISSIVE", "app: a", "'80': {mode: PERMISSIVE}"),
        peer_auth("shop", "m-early", "STRICT", "app: a", "'81': {mode: PERMISSIVE}"),
    ];
    assert_eq!(modes(&selectors, "a"), (STRICT, BTreeMap::from([(81, PERMISSIVE)])), "ports come from the winner only");
}

#[test]
fn root_namespace_selector_policies_are_ignored() {
    let p = [peer_auth("istio-system", "a-everywhere", "STRICT", "app: a", "")];
    assert_eq!((mode(&p, "a"), mode(&p, "sys")), (PERMISSIVE, PERMISSIVE));
}

#[test]
fn other_namespaces_policies_do_not_apply() {
    let p = [peer_auth("elsewhere", "default", "STRICT", "", ""), peer_auth("elsewhere", "a", "STRICT", "app: a", "")];
    assert_eq!(mode(&p, "a"), PERMISSIVE);
}
