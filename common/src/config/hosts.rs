//! Host names in Istio resources: how short names resolve and how wildcards match.
//!
//! The rule is Istio's (`ResolveShortnameToFQDN`): a host without a dot is a Kubernetes
//! service in the namespace of the object that names it, so `reviews` in a VirtualService in
//! `bookinfo` means `reviews.bookinfo.svc.<cluster domain>` (`cluster.local` unless the control
//! plane's `--cluster-domain` says otherwise). A host with a dot is taken as written (so
//! `reviews.bookinfo` is *not* expanded, exactly as in Istio); `*` and IP addresses are left
//! alone.

use std::net::IpAddr;

/// Kubernetes' default cluster DNS domain, which services live under unless the cluster says
/// otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The fully qualified form of `host` as named by an object in `namespace`, in a cluster whose
/// DNS domain is `cluster_domain`.
pub fn resolve(host: &str, namespace: &str, cluster_domain: &str) -> String {
    if host == "*" || host.contains('.') || host.parse::<IpAddr>().is_ok() {
        return host.to_string();
    }
    service_hostname(host, namespace, cluster_domain)
}

/// The DNS name of Service `name` in `namespace`: `<name>.<namespace>.svc.<cluster domain>`.
pub fn service_hostname(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{name}.{namespace}.svc.{cluster_domain}")
}

/// Whether `pattern` (possibly a wildcard such as `*.example.com` or `*`) covers `host`
/// (which may itself be a narrower wildcard).
pub fn matches(pattern: &str, host: &str) -> bool {
    if pattern == host || pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_namespace() {
        let domain = DEFAULT_CLUSTER_DOMAIN;
        assert_eq!(resolve("reviews", "bookinfo", domain), "reviews.bookinfo.svc.cluster.local");
        assert_eq!(resolve("reviews", "bookinfo", "corp.internal"), "reviews.bookinfo.svc.corp.internal");
        assert_eq!(resolve("reviews.bookinfo", "default", domain), "reviews.bookinfo");
        assert_eq!(resolve("reviews.bookinfo.svc.cluster.local", "x", domain), "reviews.bookinfo.svc.cluster.local");
        assert_eq!(resolve("*", "x", domain), "*");
        assert_eq!(resolve("10.0.0.1", "x", domain), "10.0.0.1");
    }

    #[test]
    fn wildcards() {
        assert!(matches("*.bookinfo.svc.cluster.local", "reviews.bookinfo.svc.cluster.local"));
        assert!(matches("*.com", "*.foo.com"));
        assert!(!matches("*.foo.com", "foo.com"));
        assert!(!matches("a.com", "*.com"));
        assert!(matches("*", "anything"));
    }
}
