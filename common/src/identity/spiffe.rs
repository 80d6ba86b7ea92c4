//! SPIFFE ids of the form `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::IdentityError;

/// The trust domain when none is configured, as in Istio.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

const SCHEME: &str = "spiffe://";
/// SPIFFE: a trust domain is at most 255 bytes, a whole id at most 2048.
const MAX_TRUST_DOMAIN: usize = 255;
const MAX_ID: usize = 2048;

/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
///
/// Cheap to clone (one shared string); compares, hashes and orders as its URI.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: Arc<str>,
    /// End of the trust domain in `uri`.
    td_end: usize,
    /// End of the namespace in `uri`.
    ns_end: usize,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Result<Self, IdentityError> {
        format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.td_end]
    }

    pub fn namespace(&self) -> &str {
        &self.uri[self.td_end + "/ns/".len()..self.ns_end]
    }

    pub fn service_account(&self) -> &str {
        &self.uri[self.ns_end + "/sa/".len()..]
    }

    /// The URI, `spiffe://…`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// Whether `uri` is a SPIFFE id of any shape (used to find SPIFFE SANs among other URIs).
    pub(crate) fn is_spiffe_uri(uri: &str) -> bool {
        uri.get(..SCHEME.len()).is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
    }
}

/// A trust domain as SPIFFE allows it (as in [`SpiffeId::trust_domain`]).
pub(crate) fn check_trust_domain(td: &str) -> Result<(), IdentityError> {
    let reason = if td.is_empty() {
        "is empty"
    } else if td.len() > MAX_TRUST_DOMAIN {
        "is longer than 255 bytes"
    } else if !valid_trust_domain(td) {
        "may only hold lowercase letters, digits, '.', '-' and '_' (no port, user or uppercase)"
    } else {
        return Ok(());
    };
    Err(IdentityError::InvalidTrustDomain { trust_domain: td.to_owned(), reason })
}

fn invalid(id: &str, reason: &'static str) -> IdentityError {
    IdentityError::InvalidSpiffeId { id: id.to_owned(), reason }
}

/// SPIFFE: a trust domain is lowercase letters, digits, `.`, `-` and `_`.
fn valid_trust_domain(td: &str) -> bool {
    td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// SPIFFE: a path segment is letters, digits, `.`, `-` and `_`, and not `.` or `..`.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(id: &str) -> Result<Self, IdentityError> {
        if id.len() > MAX_ID {
            return Err(invalid(id, "longer than 2048 bytes"));
        }
        let rest = id.strip_prefix(SCHEME).ok_or_else(|| invalid(id, "does not start with spiffe://"))?;
        let (td, path) = rest.split_once('/').ok_or_else(|| invalid(id, "has no path"))?;
        if td.is_empty() {
            return Err(invalid(id, "the trust domain is empty"));
        }
        if td.len() > MAX_TRUST_DOMAIN {
            return Err(invalid(id, "the trust domain is longer than 255 bytes"));
        }
        if !valid_trust_domain(td) {
            return Err(invalid(
                id,
                "the trust domain may only hold lowercase letters, digits, '.', '-' and '_' \
                 (no port, user or uppercase)",
            ));
        }
        let mut segments = path.split('/');
        let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) =
            (segments.next(), segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(invalid(id, "the path is not /ns/<namespace>/sa/<service account>"));
        };
        if !valid_segment(ns) || !valid_segment(sa) {
            return Err(invalid(
                id,
                "a namespace or service account is empty, '.', '..', or holds characters other \
                 than letters, digits, '.', '-' and '_'",
            ));
        }
        let td_end = SCHEME.len() + td.len();
        Ok(Self { uri: id.into(), td_end, ns_end: td_end + "/ns/".len() + ns.len() })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.uri)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let id = SpiffeId::new("cluster.local", "bookinfo", "reviews").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/bookinfo/sa/reviews");
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "bookinfo");
        assert_eq!(id.service_account(), "reviews");
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
        assert_eq!(format!("{id:?}"), "SpiffeId(spiffe://cluster.local/ns/bookinfo/sa/reviews)");
    }

    #[test]
    fn serializes_as_the_uri() {
        let id = SpiffeId::new("td", "ns1", "sa-1").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""spiffe://td/ns/ns1/sa/sa-1""#);
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SpiffeId>(r#""spiffe://td/x""#).is_err());
    }

    #[test]
    fn orders_and_compares_as_the_uri() {
        let a = SpiffeId::new("td", "a", "z").unwrap();
        let b = SpiffeId::new("td", "b", "a").unwrap();
        assert!(a < b);
        assert_ne!(a, b);
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "",
            "http://td/ns/a/sa/b",
            "spiffe://",
            "spiffe://td",
            "spiffe:///ns/a/sa/b",
            "spiffe://TD/ns/a/sa/b",
            "spiffe://td:443/ns/a/sa/b",
            "spiffe://user@td/ns/a/sa/b",
            "spiffe://td/ns/a",
            "spiffe://td/ns/a/sa/",
            "spiffe://td/ns//sa/b",
            "spiffe://td/ns/a/sa/b/",
            "spiffe://td/ns/a/sa/b/extra",
            "spiffe://td/sa/b/ns/a",
            "spiffe://td/ns/../sa/b",
            "spiffe://td/ns/a/sa/b?x=1",
            "spiffe://td/ns/a/sa/b#f",
            "spiffe://td/ns/a%20/sa/b",
        ] {
            let err = bad.parse::<SpiffeId>().expect_err(bad);
            assert!(err.to_string().contains("spiffe://<trust domain>/ns/"), "{bad}: {err}");
        }
        let long = format!("spiffe://td/ns/{}/sa/b", "a".repeat(2100));
        assert!(long.parse::<SpiffeId>().unwrap_err().to_string().contains("2048"));
    }

    #[test]
    fn recognises_spiffe_uris() {
        assert!(SpiffeId::is_spiffe_uri("spiffe://td/x"));
        assert!(SpiffeId::is_spiffe_uri("SPIFFE://td/x"));
        assert!(!SpiffeId::is_spiffe_uri("https://td/x"));
        assert!(!SpiffeId::is_spiffe_uri("spif"));
    }
}
