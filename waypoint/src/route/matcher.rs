//! The request side of an `HttpMatch`: what a request offers to be matched on
//! ([`RequestView`]) and the compiled conditions on it.

use std::borrow::Cow;

use ambit_common::{
    api::v1::{HeaderMatch, StringMatcher, string_matcher::Kind},
    config::Pattern,
};
use http::HeaderMap;

use super::source::Source;

/// What route matching sees of a request.
pub struct RequestView<'a> {
    method: &'a str,
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    source: &'a Source,
}

impl<'a> RequestView<'a> {
    /// A request as the waypoint received it from `source`. The authority is the URI's
    /// (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target), else the `Host` header; the
    /// scheme is the URI's, else `http` (requests reach a waypoint as cleartext HTTP inside
    /// HBONE).
    pub fn new(parts: &'a http::request::Parts, source: &'a Source) -> Self {
        let uri = &parts.uri;
        let authority = match uri.authority() {
            Some(authority) => authority.as_str(),
            None => parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or(""),
        };
        Self {
            method: parts.method.as_str(),
            scheme: uri.scheme_str().unwrap_or("http"),
            authority,
            path: uri.path(),
            query: uri.query(),
            headers: &parts.headers,
            source,
        }
    }

    pub(crate) fn method(&self) -> &str {
        self.method
    }

    pub(super) fn scheme(&self) -> &str {
        self.scheme
    }

    pub(crate) fn authority(&self) -> &str {
        self.authority
    }

    /// The path, without the query string.
    pub(crate) fn path(&self) -> &str {
        self.path
    }

    pub(crate) fn source(&self) -> &Source {
        self.source
    }

    /// A header's value as matching sees it: Envoy's pseudo-headers (`:method`, `:authority`,
    /// `:path` with the query, `:scheme`) included; a header sent several times is its values
    /// joined with ","; bytes that are not UTF-8 are replaced.
    pub(crate) fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        match name {
            ":method" => return Some(Cow::Borrowed(self.method)),
            ":authority" => return Some(Cow::Borrowed(self.authority)),
            ":scheme" => return Some(Cow::Borrowed(self.scheme)),
            ":path" => {
                return Some(match self.query {
                    Some(query) => Cow::Owned(format!("{}?{query}", self.path)),
                    None => Cow::Borrowed(self.path),
                });
            }
            _ => {}
        }
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let text = |v: &'a http::HeaderValue| String::from_utf8_lossy(v.as_bytes());
        let mut joined = text(first);
        for value in values {
            let owned = joined.to_mut();
            owned.push(',');
            owned.push_str(&text(value));
        }
        Some(joined)
    }

    /// The first value of query parameter `name`, percent-decoded (as is the name); a parameter
    /// without `=` has the empty value.
    pub(super) fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.query?
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }
}

/// Decodes `%XX` escapes; a malformed escape is kept as written. `+` stays `+` (Envoy's query
/// parameter matching does not treat it as a space either).
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Istio's StringMatch, compiled: exact and prefix compare bytes, a regex matches the whole value.
pub(crate) enum StringCondition {
    Exact(String),
    Prefix(String),
    Regex(Pattern),
}

impl StringCondition {
    pub(crate) fn compile(matcher: &StringMatcher) -> Result<Self, String> {
        match &matcher.kind {
            Some(Kind::Exact(value)) => Ok(Self::Exact(value.clone())),
            Some(Kind::Prefix(value)) => Ok(Self::Prefix(value.clone())),
            Some(Kind::Regex(pattern)) => Pattern::new(pattern).map(Self::Regex),
            None => Err("a string match needs one of exact, prefix or regex".into()),
        }
    }

    pub(crate) fn holds(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => value == expected,
            Self::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Self::Regex(pattern) => pattern.is_match(value),
        }
    }
}

/// The `uri` condition: exact and prefix may ignore ASCII case (`ignoreUriCase`); a regex never
/// does, as in Istio.
pub(super) struct UriCondition {
    condition: StringCondition,
    ignore_case: bool,
}

impl UriCondition {
    pub(super) fn compile(matcher: &StringMatcher, ignore_case: bool) -> Result<Self, String> {
        Ok(Self { condition: StringCondition::compile(matcher)?, ignore_case })
    }

    pub(super) fn holds(&self, path: &str) -> bool {
        match (&self.condition, self.ignore_case) {
            (StringCondition::Exact(expected), true) => path.eq_ignore_ascii_case(expected),
            (StringCondition::Prefix(prefix), true) => {
                path.len() >= prefix.len() && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            (condition, _) => condition.holds(path),
        }
    }
}

/// A header or query parameter condition: present with any value, or with a matching value.
pub(super) struct HeaderCondition {
    name: String,
    /// `None`: presence.
    value: Option<StringCondition>,
}

impl HeaderCondition {
    pub(super) fn compile(matcher: &HeaderMatch) -> Result<Self, String> {
        if matcher.name.is_empty() {
            return Err("the name is empty".into());
        }
        Ok(Self {
            name: matcher.name.clone(),
            value: matcher.value.as_ref().map(StringCondition::compile).transpose()?,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// For `headers` and `queryParams`: a missing header never holds.
    pub(super) fn holds(&self, value: Option<&str>) -> bool {
        match (&self.value, value) {
            (None, present) => present.is_some(),
            (Some(_), None) => false,
            (Some(condition), Some(value)) => condition.holds(value),
        }
    }

    /// For `withoutHeaders`: a presence condition holds when the header is there; a value
    /// condition compares a missing header as "".
    pub(super) fn holds_without(&self, value: Option<&str>) -> bool {
        match &self.value {
            None => value.is_some(),
            Some(condition) => condition.holds(value.unwrap_or("")),
        }
    }
}
