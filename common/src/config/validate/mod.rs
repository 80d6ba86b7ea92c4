//! Raw → model conversions (`TryFrom`), one module per kind, and the checks they share.
//!
//! Each conversion stops at the first problem: the error names the object, the field path and
//! what to do, and fixing it and re-applying shows the next one (as serde does for syntax).

use std::collections::BTreeMap;

use super::{
    duration::Duration,
    error::{FieldResult, Path},
    model::{ExportTo, IpBlock, Labels, Percent, Selector, StringMatch, ValueMatch},
    pattern::Pattern,
    raw::{self, Text},
};
use crate::names::{check_dns_label, check_dns_subdomain};

mod destination_rule;
mod k8s;
mod meta;
mod route;
mod route_extras;
mod security;
mod service_entry;
mod traffic_policy;
mod virtual_service;

pub use meta::DEFAULT_NAMESPACE;
pub(crate) use meta::{ObjectInfo, istio_meta, k8s_meta};

/// A port number in 1–65535.
pub(crate) fn port(value: i64, at: &Path) -> FieldResult<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| at.err(format!("port {value} is out of range; it must be in 1..65535")))
}

pub(crate) fn opt_port(value: Option<i64>, at: &Path) -> FieldResult<Option<u16>> {
    value.map(|v| port(v, at)).transpose()
}

/// A count that must not be negative and fits in 32 bits.
pub(crate) fn count(value: Option<i64>, at: &Path) -> FieldResult<Option<u32>> {
    value
        .map(|v| u32::try_from(v).map_err(|_| at.err(format!("{v} must be a non-negative number below 2^32"))))
        .transpose()
}

/// An integer percentage (`maxEjectionPercent`, the deprecated `percent` fields).
pub(crate) fn int_percent(value: Option<i64>, at: &Path) -> FieldResult<Option<u32>> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v <= 100)
                .ok_or_else(|| at.err(format!("percentage {v} is not in range 0..100")))
        })
        .transpose()
}

/// Istio's `Percent` message (`{value: 12.5}`).
pub(crate) fn percent(raw: &raw::common::Percent, at: &Path) -> FieldResult<Percent> {
    Percent::new(raw.value)
        .ok_or_else(|| at.key("value").err(format!("percentage {} is not in range 0..100", raw.value)))
}

/// A duration of at least 1ms, in whole milliseconds (Istio's `ValidateDuration`).
pub(crate) fn duration(text: &Text, at: &Path) -> FieldResult<Duration> {
    let d = any_duration(text, at)?;
    if d.as_std() < std::time::Duration::from_millis(1) {
        return Err(at.err(format!("duration {:?} must be at least 1ms", text.0)));
    }
    if d.as_std().subsec_nanos() % 1_000_000 != 0 {
        return Err(at.err(format!("duration {:?} is finer than 1ms; Istio supports millisecond precision", text.0)));
    }
    Ok(d)
}

pub(crate) fn opt_duration(text: Option<&Text>, at: &Path) -> FieldResult<Option<Duration>> {
    text.map(|t| duration(t, at)).transpose()
}

/// A duration that may be zero (`timeout: 0s` disables a route's timeout).
pub(crate) fn any_duration(text: &Text, at: &Path) -> FieldResult<Duration> {
    Duration::parse(&text.0).map_err(|e| at.err(e))
}

/// Exactly one of exact, prefix or regex.
pub(crate) fn string_match(raw: &raw::common::StringMatch, at: &Path) -> FieldResult<StringMatch> {
    match (&raw.exact, &raw.prefix, &raw.regex) {
        (Some(e), None, None) => Ok(StringMatch::Exact(e.clone())),
        (None, Some(p), None) => Ok(StringMatch::Prefix(p.clone())),
        (None, None, Some(r)) => Pattern::new(r).map(StringMatch::Regex).map_err(|e| at.key("regex").err(e)),
        (None, None, None) => Err(at.err("string match needs one of exact, prefix or regex")),
        _ => Err(at.err("string match must set only one of exact, prefix or regex")),
    }
}

pub(crate) fn opt_string_match(raw: Option<&raw::common::StringMatch>, at: &Path) -> FieldResult<Option<StringMatch>> {
    raw.map(|m| string_match(m, at)).transpose()
}

/// A header or query-parameter match: an empty match (`{}` or null) means "present".
pub(crate) fn value_matches(
    raw: &BTreeMap<String, Option<raw::common::StringMatch>>,
    at: &Path,
    check_name: fn(&str) -> Result<(), String>,
) -> FieldResult<BTreeMap<String, ValueMatch>> {
    let mut out = BTreeMap::new();
    for (name, m) in raw {
        let at = at.entry(name);
        check_name(name).map_err(|e| at.err(e))?;
        let value = match m {
            Some(m) if m.exact.is_some() || m.prefix.is_some() || m.regex.is_some() => {
                ValueMatch::Is(string_match(m, &at)?)
            }
            _ => ValueMatch::Present,
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Istio's header-name rule for matches: `[-_A-Za-z0-9]+`.
pub(crate) fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name must not be empty".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("{name:?} is not a valid header name"));
    }
    Ok(())
}

pub(crate) fn any_name(name: &str) -> Result<(), String> {
    if name.is_empty() { Err("name must not be empty".into()) } else { Ok(()) }
}

/// Kubernetes label keys and values.
pub(crate) fn labels(raw: &BTreeMap<String, String>, at: &Path) -> FieldResult<Labels> {
    for (k, v) in raw {
        check_label_key(k).map_err(|e| at.err(format!("invalid label key {k:?}: {e}")))?;
        check_label_value(v).map_err(|e| at.entry(k).err(format!("invalid label value {v:?}: {e}")))?;
    }
    Ok(raw.clone())
}

fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix).map_err(|e| format!("prefix {e}"))?;
    }
    if name.is_empty() {
        return Err("name part must not be empty".into());
    }
    check_label_value(name)
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("must be at most 63 characters (has {})", value.len()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !value.chars().all(ok_char) {
        return Err("must consist of letters, digits, '-', '_' and '.'".into());
    }
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if !edge_ok(value.chars().next()) || !edge_ok(value.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// `matchLabels`: valid labels without wildcards. An empty selector means "no selector".
pub(crate) fn selector(raw: &BTreeMap<String, String>, at: &Path) -> FieldResult<Option<Selector>> {
    for (k, v) in raw {
        if k.contains('*') || v.contains('*') {
            return Err(at.entry(k).err("wildcards are not supported in selectors"));
        }
    }
    let labels = labels(raw, at)?;
    Ok((!labels.is_empty()).then(|| Selector::new(labels)))
}

/// A host as Istio's `ValidateWildcardDomain` wants it: DNS labels, an optional wildcard
/// first label (`*` or `*.example.com`), at most 255 characters.
pub(crate) fn wildcard_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host must not be empty".into());
    }
    if host.len() > 255 {
        return Err(format!("host {host:?} is too long (max 255)"));
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let mut labels = trimmed.split('.');
    let first = labels.next().unwrap_or_default();
    let first_ok = first == "*" || check_dns_label(first.strip_prefix('*').unwrap_or(first)).is_ok();
    if !first_ok {
        return Err(format!("host {host:?} is not a valid domain name (label {first:?} is invalid)"));
    }
    let rest: Vec<&str> = labels.collect();
    for label in &rest {
        check_dns_label(label)
            .map_err(|e| format!("host {host:?} is not a valid domain name (label {label:?} {e})"))?;
    }
    if let Some(tld) = rest.last().filter(|t| t.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("host {host:?} is not a valid domain name (top-level domain {tld:?} is all digits)"));
    }
    Ok(())
}

/// A DNS label such as a namespace or subset name.
pub(crate) fn dns_label(value: &str, at: &Path, what: &str) -> FieldResult<()> {
    check_dns_label(value).map_err(|e| at.err(format!("{what} {value:?} is invalid: it {e}")))
}

/// `exportTo`: `*`, `.`, `~` (ServiceEntry only) or namespace names; no duplicates.
pub(crate) fn export_to(raw: &[String], namespace: &str, allow_nobody: bool, at: &Path) -> FieldResult<ExportTo> {
    if raw.is_empty() {
        return Ok(ExportTo::All);
    }
    let mut names = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let at = at.index(i);
        let name = match entry.as_str() {
            "*" | "~" if raw.len() > 1 => {
                return Err(at.err(format!("{entry:?} cannot be combined with other exportTo entries")));
            }
            "*" => return Ok(ExportTo::All),
            "~" if allow_nobody => return Ok(ExportTo::Nobody),
            "~" => return Err(at.err("\"~\" (visible to no one) is only allowed for ServiceEntries")),
            "." => namespace.to_string(),
            other => {
                dns_label(other, &at, "namespace")?;
                other.to_string()
            }
        };
        if names.contains(&name) {
            return Err(at.err(format!("duplicate exportTo entry {name:?}")));
        }
        names.push(name);
    }
    Ok(ExportTo::Namespaces(names))
}

/// Gateway names in a VirtualService: `mesh`, `<namespace>/<name>`, or a bare name.
pub(crate) fn gateway_names(raw: &[String], at: &Path) -> FieldResult<Vec<String>> {
    for (i, g) in raw.iter().enumerate() {
        let at = at.index(i);
        match g.split_once('/') {
            Some((ns, name)) => {
                dns_label(ns, &at, "gateway namespace")?;
                dns_label(name, &at, "gateway name")?;
            }
            None => wildcard_host(g).map_err(|e| at.err(e))?,
        }
    }
    Ok(raw.to_vec())
}

/// Destination subnets and IP blocks.
pub(crate) fn ip_blocks(raw: &[String], at: &Path) -> FieldResult<Vec<IpBlock>> {
    raw.iter().enumerate().map(|(i, s)| IpBlock::parse(s).map_err(|e| at.index(i).err(e))).collect()
}

/// Fails when more than one of the named fields is set; `what` finishes the sentence.
pub(crate) fn at_most_one(at: &Path, fields: &[(&str, bool)], what: &str) -> FieldResult<()> {
    let set: Vec<&str> = fields.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    if set.len() > 1 {
        return Err(at.err(format!("{} are mutually exclusive; {what}", set.join(" and "))));
    }
    Ok(())
}

/// The text that goes with a feature Ambit parses but does not implement.
pub(crate) fn unsupported(feature: &str, hint: &str) -> String {
    format!("{feature} is not supported by Ambit; {hint}")
}

#[cfg(test)]
mod tests;
