//! The key a consistent-hash policy hashes, as Envoy's `Http::HashPolicyImpl` computes it
//! (`source/common/http/hash_policy.cc`): one hash method per cluster, since Istio writes one.
//!
//! - header: every value of the header, sorted bytewise and hashed as their concatenation (so
//!   the order the values arrive in does not matter);
//! - cookie: the first cookie of that name, surrounding double quotes removed. When it is missing
//!   (or empty) and a TTL is configured, Envoy makes one up: the hex XXH64 of the downstream
//!   connection's remote and local addresses (`10.0.0.1:4321` `10.0.0.2:8080` concatenated), hashes
//!   that, and adds a `Set-Cookie` to the response so the client sends it from then on;
//! - query parameter: the first value of the parameter in the raw query, not percent-decoded;
//! - source IP: the address of the downstream peer, as text (`10.0.0.1`, `fd00::1`).
//!
//! No key (header, cookie or parameter absent, TCP traffic for an HTTP key): no hash, and the
//! balancer uses a random one.

use std::{fmt, net::SocketAddr, time::Duration};

use ambit_common::api::v1::{HashCookie, consistent_hash::Key};
use http::{HeaderName, HeaderValue, header::COOKIE, request::Parts};

use super::{LbContext, xxhash::xxhash64};

/// A header to add to the response: the cookie Envoy generated for a request that had none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Empty: no `Path` attribute.
    pub path: String,
    /// `None`: a session cookie (no `Max-Age`).
    pub max_age: Option<Duration>,
}

/// Envoy's `Http::Utility::makeSetCookieValue` form: `name="value"; Max-Age=60; Path=/; HttpOnly`.
impl fmt::Display for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=\"{}\"", self.name, self.value)?;
        if let Some(max_age) = self.max_age {
            write!(f, "; Max-Age={}", max_age.as_secs())?;
        }
        if !self.path.is_empty() {
            write!(f, "; Path={}", self.path)?;
        }
        f.write_str("; HttpOnly")
    }
}

/// A consistent-hash key, compiled.
#[derive(Debug)]
pub(super) enum HashPolicy {
    Header(HeaderKey),
    Cookie(CookieKey),
    SourceIp,
    QueryParameter(String),
    /// `use_source_ip: false`: Envoy adds no hash method, so every request gets a random hash.
    Nothing,
}

#[derive(Debug)]
pub(super) enum HeaderKey {
    /// `:authority`, `:path`, `:method` or `:scheme`, which `http` keeps outside the header map.
    Pseudo(&'static str),
    Regular(HeaderName),
}

#[derive(Debug)]
pub(super) struct CookieKey {
    name: String,
    path: String,
    /// `None`: never generate the cookie; `Some(None)`: generate a session cookie.
    generate: Option<Option<Duration>>,
}

impl HashPolicy {
    /// `Err((field, reason))` for a key that cannot be used.
    pub(super) fn compile(key: Option<&Key>) -> Result<Self, (String, String)> {
        let field = |name: &str, reason: &str| (format!("loadBalancer.consistentHash.{name}"), reason.to_owned());
        match key {
            None => {
                Err(field("key", "a consistent hash needs a key: a header, cookie, query parameter or the source IP"))
            }
            Some(Key::HeaderName(name)) => compile_header(name).map(Self::Header).map_err(|r| field("headerName", &r)),
            Some(Key::Cookie(cookie)) => compile_cookie(cookie).map(Self::Cookie).map_err(|r| field("cookie", &r)),
            Some(Key::UseSourceIp(true)) => Ok(Self::SourceIp),
            Some(Key::UseSourceIp(false)) => Ok(Self::Nothing),
            Some(Key::QueryParameterName(name)) if name.is_empty() => {
                Err(field("queryParameterName", "the parameter name is empty"))
            }
            Some(Key::QueryParameterName(name)) => Ok(Self::QueryParameter(name.clone())),
        }
    }

    /// The request's hash, if it has a key, and the cookie to set when the key was generated.
    pub(super) fn hash(&self, context: &LbContext<'_>) -> (Option<u64>, Option<SetCookie>) {
        match self {
            Self::Header(key) => (context.request.and_then(|parts| header_hash(key, parts)), None),
            Self::Cookie(key) => match context.request {
                Some(parts) => cookie_hash(key, parts, context.peer, context.local),
                None => (None, None),
            },
            Self::SourceIp => (Some(xxhash64(context.peer.ip().to_string().as_bytes(), 0)), None),
            Self::QueryParameter(name) => {
                let value = context.request.and_then(|parts| query_value(parts.uri.query()?, name));
                (value.map(|v| xxhash64(v.as_bytes(), 0)), None)
            }
            Self::Nothing => (None, None),
        }
    }
}

fn compile_header(name: &str) -> Result<HeaderKey, String> {
    if let Some(pseudo) = [":authority", ":path", ":method", ":scheme"].into_iter().find(|p| *p == name) {
        return Ok(HeaderKey::Pseudo(pseudo));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("header name {name:?} is not lower case"));
    }
    HeaderName::from_bytes(name.as_bytes()).map(HeaderKey::Regular).map_err(|e| format!("header name {name:?}: {e}"))
}

fn compile_cookie(cookie: &HashCookie) -> Result<CookieKey, String> {
    if cookie.name.is_empty() {
        return Err("the cookie name is empty".into());
    }
    // The generated Set-Cookie must be a valid header value.
    let sample =
        SetCookie { name: cookie.name.clone(), value: String::new(), path: cookie.path.clone(), max_age: None };
    HeaderValue::from_str(&sample.to_string()).map_err(|_| {
        format!("name {:?} or path {:?} cannot be sent in a Set-Cookie header", cookie.name, cookie.path)
    })?;
    // Envoy keeps whole seconds of the TTL (`std::chrono::seconds(ttl.seconds())`); 0 s is a
    // session cookie.
    let generate = cookie.ttl_ms.map(|ms| Some(Duration::from_secs(ms / 1000)).filter(|ttl| !ttl.is_zero()));
    Ok(CookieKey { name: cookie.name.clone(), path: cookie.path.clone(), generate })
}

fn header_hash(key: &HeaderKey, parts: &Parts) -> Option<u64> {
    match key {
        HeaderKey::Pseudo(name) => {
            let value = match *name {
                ":authority" => match parts.uri.authority() {
                    Some(authority) => authority.as_str().as_bytes(),
                    None => parts.headers.get(http::header::HOST)?.as_bytes(),
                },
                ":path" => parts.uri.path_and_query()?.as_str().as_bytes(),
                ":method" => parts.method.as_str().as_bytes(),
                _ => parts.uri.scheme_str().unwrap_or("http").as_bytes(),
            };
            Some(xxhash64(value, 0))
        }
        HeaderKey::Regular(name) => {
            let mut values: Vec<&[u8]> = parts.headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
            match values.as_slice() {
                [] => None,
                [one] => Some(xxhash64(one, 0)),
                _ => {
                    values.sort_unstable();
                    Some(xxhash64(&values.concat(), 0))
                }
            }
        }
    }
}

fn cookie_hash(
    key: &CookieKey,
    parts: &Parts,
    peer: SocketAddr,
    local: SocketAddr,
) -> (Option<u64>, Option<SetCookie>) {
    let value = cookie_value(parts, &key.name).unwrap_or_default();
    if !value.is_empty() {
        return (Some(xxhash64(value, 0)), None);
    }
    let Some(max_age) = key.generate else {
        return (None, None);
    };
    let connection = format!("{peer}{local}");
    let value = format!("{:016x}", xxhash64(connection.as_bytes(), 0));
    let hash = xxhash64(value.as_bytes(), 0);
    (Some(hash), Some(SetCookie { name: key.name.clone(), value, path: key.path.clone(), max_age }))
}

/// The value of the first cookie called `name` in the request's `Cookie` headers, parsed as
/// Envoy's `Http::Utility::parseCookieValue` does: pairs split on `;`, leading spaces of the name
/// skipped, one pair of surrounding double quotes removed from the value.
fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a [u8]> {
    parts.headers.get_all(COOKIE).iter().flat_map(|header| header.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let start = pair.iter().position(|&b| b != b' ').unwrap_or(eq).min(eq);
        if &pair[start..eq] != name.as_bytes() {
            return None;
        }
        let value = &pair[eq + 1..];
        Some(match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        })
    })
}

/// The first value of parameter `name` in `query`, raw (Envoy's `parseQueryString` does not
/// decode); a parameter without `=` has the empty value.
fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Parts {
        build(http::Request::builder()).body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_are_parsed_as_envoy_does() {
        let p = parts(|b| b.header("cookie", "a=1; session=\"abc\"; x=2").header("cookie", "session=later"));
        assert_eq!(cookie_value(&p, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&p, "x"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&p, "missing"), None);
        let p = parts(|b| b.header("cookie", "novalue; empty=; q=\""));
        assert_eq!(cookie_value(&p, "empty"), Some(&b""[..]));
        // A lone quote is not a quoted value.
        assert_eq!(cookie_value(&p, "q"), Some(&b"\""[..]));
    }

    #[test]
    fn query_parameters_are_raw_and_first_wins() {
        assert_eq!(query_value("a=1&user=b%20c&user=d", "user"), Some("b%20c"));
        assert_eq!(query_value("flag&x=1", "flag"), Some(""));
        assert_eq!(query_value("x=1", "user"), None);
    }

    #[test]
    fn set_cookie_has_envoys_form() {
        let cookie = SetCookie {
            name: "session".into(),
            value: "00ff".into(),
            path: "/api".into(),
            max_age: Some(Duration::from_secs(60)),
        };
        assert_eq!(cookie.to_string(), "session=\"00ff\"; Max-Age=60; Path=/api; HttpOnly");
        let session = SetCookie { path: String::new(), max_age: None, ..cookie };
        assert_eq!(session.to_string(), "session=\"00ff\"; HttpOnly");
    }

    #[test]
    fn invalid_keys_are_refused() {
        assert!(HashPolicy::compile(None).is_err());
        assert!(HashPolicy::compile(Some(&Key::HeaderName(String::new()))).is_err());
        assert!(HashPolicy::compile(Some(&Key::HeaderName("X-User".into()))).is_err());
        assert!(HashPolicy::compile(Some(&Key::QueryParameterName(String::new()))).is_err());
        let cookie = |name: &str| Key::Cookie(HashCookie { name: name.into(), ..Default::default() });
        assert!(HashPolicy::compile(Some(&cookie(""))).is_err());
        assert!(HashPolicy::compile(Some(&cookie("bad\nname"))).is_err());
        assert!(HashPolicy::compile(Some(&cookie("session"))).is_ok());
        assert!(matches!(HashPolicy::compile(Some(&Key::HeaderName(":authority".into()))), Ok(HashPolicy::Header(_))));
    }
}
