//! Kubernetes name rules, checked where names enter Ambit so later code can trust them.

/// An RFC 1123 DNS label (namespaces, most names): 1–63 chars of `[a-z0-9-]`, alphanumeric at both
/// ends. Returns what is wrong, for an error message.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!("must be at most 63 characters (has {})", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(format!("must consist of lower-case letters, digits and '-' (found {c:?})"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// An RFC 1123 DNS subdomain (pod names, service accounts): up to 253 chars, dot-separated
/// labels of `[a-z0-9-]`.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("must be at most 253 characters (has {})", name.len()));
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Err("must not contain empty dot-separated parts".into());
        }
        if let Some(c) = part.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(format!("must consist of lower-case letters, digits, '-' and '.' (found {c:?})"));
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err("each dot-separated part must start and end with a letter or digit".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("bookinfo").is_ok());
        assert!(check_dns_label("a-1").is_ok());
        assert!(check_dns_label("").is_err());
        assert!(check_dns_label("Bookinfo").unwrap_err().contains("'B'"));
        assert!(check_dns_label("-a").is_err());
        assert!(check_dns_label(&"a".repeat(64)).unwrap_err().contains("63"));
    }

    #[test]
    fn dns_subdomains() {
        assert!(check_dns_subdomain("reviews-v1-5d8f7c9b-xk2lp").is_ok());
        assert!(check_dns_subdomain("a.b").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
        assert!(check_dns_subdomain("a_b").is_err());
    }
}
