//! JSON rendering of `bytes` fields that hold IP addresses (4 or 16 bytes), for config dumps.

use std::net::IpAddr;

use serde::{Serializer, ser::SerializeSeq};

/// An IP from its 4 or 16 network-order bytes.
pub fn to_ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The 4 or 16 network-order bytes of an IP.
pub fn from_ip(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn text(bytes: &[u8]) -> String {
    match to_ip(bytes) {
        Some(ip) => ip.to_string(),
        None if bytes.is_empty() => String::new(),
        None => format!("<invalid address: {} bytes>", bytes.len()),
    }
}

pub(crate) fn ip<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&text(bytes))
}

pub(crate) fn ips<S: Serializer>(list: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(list.len()))?;
    for bytes in list {
        seq.serialize_element(&text(bytes))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ip in ["10.1.0.2", "fd00::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(to_ip(&from_ip(ip)), Some(ip));
        }
        assert_eq!(text(&[1, 2, 3]), "<invalid address: 3 bytes>");
    }
}
