//! Validated value types several kinds share.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{Serialize, Serializer};

use crate::config::pattern::Pattern;

/// Label keys and values, each checked against Kubernetes' rules.
pub type Labels = BTreeMap<String, String>;

/// A workload selector: the labels a pod must carry. Never empty (an empty selector is
/// written as no selector).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Selector {
    pub match_labels: Labels,
}

impl Selector {
    pub(crate) fn new(match_labels: Labels) -> Self {
        Self { match_labels }
    }

    /// Whether a workload with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Istio's `StringMatch`: exactly one of exact, prefix or regex (full match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(Pattern),
}

impl StringMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
        }
    }
}

/// A match on a header or query parameter: `{}` means "present", as in Istio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueMatch {
    Present,
    Is(StringMatch),
}

/// A percentage in 0–100.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Default)]
pub struct Percent(f64);

impl Percent {
    pub const ZERO: Percent = Percent(0.0);
    pub const HUNDRED: Percent = Percent(100.0);

    pub(crate) fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Self(value))
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// A CIDR block or a single address (a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpBlock {
    /// Parses `10.0.0.0/8`, `2001:db8::/32` or a single address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|_| format!("{text:?} is not a valid IP address or CIDR block (e.g. 10.0.0.0/16)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{text:?} is not a valid CIDR block: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix_len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for IpBlock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where a resource is visible (`exportTo`). Empty means everywhere (Istio's default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ExportTo {
    #[default]
    All,
    /// The listed namespaces (`.` already replaced by the object's own namespace).
    Namespaces(Vec<String>),
    /// `~`: ServiceEntries only, visible to no one but its own proxies.
    Nobody,
}

impl ExportTo {
    pub fn visible_to(&self, namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Namespaces(list) => list.iter().any(|n| n == namespace),
            ExportTo::Nobody => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_blocks() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.200.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert_eq!(IpBlock::parse("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert!(IpBlock::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert!(IpBlock::parse("10.0.0.0/33").unwrap_err().contains("prefix length"));
        assert!(IpBlock::parse("10.0.0/8").is_err());
    }

    #[test]
    fn percent_range() {
        assert!(Percent::new(100.0).is_some());
        assert!(Percent::new(100.1).is_none());
        assert!(Percent::new(-0.1).is_none());
        assert!(Percent::new(f64::NAN).is_none());
    }
}
