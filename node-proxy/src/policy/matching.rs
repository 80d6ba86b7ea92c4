//! Value matchers of the L4 authorization form: Istio's string forms, IP blocks and ports.
//!
//! Each matcher answers "does this value match" and nothing else; negation, OR and AND are
//! the rule evaluator's business (`authz.rs`). A matcher the control plane could not have
//! produced (an empty `StringMatch`, a 5-byte address, a `/33` prefix, a `when` value that is
//! not an IP or a port) never matches: inside a positive list it cannot admit anything, and
//! Istio drops such values the same way (istiod's `stringToIP`/`stringToPort` skip them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ambit_common::api::v1::{IpNet, StringMatch, string_match::Kind};

/// Istio's string forms (<https://istio.io/latest/docs/reference/config/security/authorization-policy/#Rule>):
/// exact `abc`, prefix `abc*`, suffix `*abc`, and presence `*`, which "will match when value is
/// not empty". `None` is an absent attribute (the peer identity of a plaintext connection):
/// nothing matches it, not even `*`.
pub(super) fn string_matches(m: &StringMatch, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    match &m.kind {
        Some(Kind::Exact(exact)) => value == exact,
        Some(Kind::Prefix(prefix)) => value.starts_with(prefix.as_str()),
        Some(Kind::Suffix(suffix)) => value.ends_with(suffix.as_str()),
        // The bool only marks the oneof case; `*` means "present".
        Some(Kind::Any(_)) => !value.is_empty(),
        None => false,
    }
}

/// An address and prefix length, both families, with IPv4-mapped IPv6 folded into IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// From the API's form: 4 or 16 address bytes and a prefix length that fits them.
    pub(super) fn from_api(net: &IpNet) -> Option<Self> {
        let addr = match net.address.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(net.address.as_slice()).ok()?),
            16 => IpAddr::from(<[u8; 16]>::try_from(net.address.as_slice()).ok()?),
            _ => return None,
        };
        Self::new(addr, u8::try_from(net.prefix_len).ok()?)
    }

    /// From a `when` value: `10.0.0.0/8`, `fd00::/64`, or a single address (`10.1.2.3`).
    pub(super) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.split_once('/') {
            Some((addr, len)) => Self::new(addr.parse().ok()?, len.parse().ok()?),
            None => {
                let addr: IpAddr = text.parse().ok()?;
                Self::new(addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        }
    }

    fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        match addr {
            IpAddr::V4(_) if prefix_len > 32 => None,
            IpAddr::V6(_) if prefix_len > 128 => None,
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: a mapped block shorter than /96 also covers
            // non-mapped IPv6 addresses, so it stays IPv6.
            IpAddr::V6(v6) if prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Some(Self { addr: IpAddr::V4(v4), prefix_len: prefix_len - 96 }),
                None => Some(Self { addr, prefix_len }),
            },
            _ => Some(Self { addr, prefix_len }),
        }
    }

    /// Whether `ip` is in the block; an IPv4-mapped IPv6 address is compared as IPv4.
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4_bits(net, self.prefix_len) == v4_bits(ip, self.prefix_len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => v6_bits(net, self.prefix_len) == v6_bits(ip, self.prefix_len),
            _ => false,
        }
    }
}

fn v4_bits(ip: Ipv4Addr, prefix_len: u8) -> u32 {
    // A shift by the full width is 0 bits of network: `/0` matches everything.
    u32::from(ip) & u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0)
}

fn v6_bits(ip: Ipv6Addr, prefix_len: u8) -> u128 {
    u128::from(ip) & u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0)
}

/// A `when` value on `source.ip`/`destination.ip`. The control plane sends CIDRs as `exact`
/// strings; `*` (present) is true of any address; prefix/suffix are not address forms.
pub(super) fn ip_value_matches(m: &StringMatch, ip: IpAddr) -> bool {
    match &m.kind {
        Some(Kind::Exact(text)) => Cidr::parse(text).is_some_and(|cidr| cidr.contains(ip)),
        Some(Kind::Any(_)) => true,
        Some(Kind::Prefix(_) | Kind::Suffix(_)) | None => false,
    }
}

/// A `when` value on `destination.port`: a decimal port as an `exact` string, or `*`.
pub(super) fn port_value_matches(m: &StringMatch, port: u16) -> bool {
    match &m.kind {
        Some(Kind::Exact(text)) => text.trim().parse::<u16>().is_ok_and(|p| p == port),
        Some(Kind::Any(_)) => true,
        Some(Kind::Prefix(_) | Kind::Suffix(_)) | None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(addr: &str, prefix_len: u32) -> IpNet {
        let address = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.octets().to_vec(),
            Ok(IpAddr::V6(v6)) => v6.octets().to_vec(),
            Err(e) => panic!("{addr}: {e}"),
        };
        IpNet { address, prefix_len }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn cidr_from_api_checks_lengths() {
        assert!(Cidr::from_api(&IpNet { address: vec![10, 0, 0], prefix_len: 8 }).is_none());
        assert!(Cidr::from_api(&net("10.0.0.0", 33)).is_none());
        assert!(Cidr::from_api(&net("fd00::", 129)).is_none());
        let all = Cidr::from_api(&net("0.0.0.0", 0)).expect("valid");
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("fd00::1")));
    }

    #[test]
    fn cidr_contains_both_families_and_folds_mapped_addresses() {
        let block = Cidr::from_api(&net("10.1.0.0", 16)).expect("valid");
        assert!(block.contains(ip("10.1.200.3")));
        assert!(block.contains(ip("::ffff:10.1.2.3")), "a mapped source address is IPv4");
        assert!(!block.contains(ip("10.2.0.1")));
        let mapped = Cidr::from_api(&net("::ffff:10.1.0.0", 112)).expect("valid");
        assert_eq!(mapped, block, "a mapped block is the IPv4 block");
        let v6 = Cidr::from_api(&net("fd00::", 64)).expect("valid");
        assert!(v6.contains(ip("fd00::abcd")) && !v6.contains(ip("fd01::1")));
        let host = Cidr::parse("10.1.2.3").expect("valid");
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
    }

    #[test]
    fn when_values_parse_or_never_match() {
        let exact = |s: &str| StringMatch { kind: Some(Kind::Exact(s.into())) };
        assert!(ip_value_matches(&exact("10.0.0.0/8"), ip("10.9.9.9")));
        assert!(!ip_value_matches(&exact("not-an-ip"), ip("10.9.9.9")));
        assert!(!ip_value_matches(&exact("10.0.0.0/40"), ip("10.9.9.9")));
        assert!(!ip_value_matches(&StringMatch { kind: Some(Kind::Prefix("10.".into())) }, ip("10.9.9.9")));
        assert!(port_value_matches(&exact(" 443 "), 443));
        assert!(!port_value_matches(&exact("70000"), 4464));
        assert!(!string_matches(&StringMatch { kind: None }, Some("x")));
        assert!(!string_matches(&StringMatch { kind: Some(Kind::Any(true)) }, Some("")));
    }
}
