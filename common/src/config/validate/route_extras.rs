//! The per-route policies of an HTTP route: redirect, direct response, rewrite, retries,
//! fault injection, mirroring and CORS.

use super::{
    at_most_one, duration, int_percent, opt_duration, percent, port, route::destination, string_match, unsupported,
};
use crate::config::{
    error::{FieldResult, Path},
    model::{
        Abort, AbortError, Body, Cors, Delay, DirectResponse, Fault, GrpcStatus, Mirror, Percent, Redirect,
        RedirectPort, Retry, RetryOn, Rewrite, StringMatch, UnmatchedPreflights, UriRewrite,
    },
    pattern::Pattern,
    raw::virtual_service as rv,
};

/// Istio refuses direct-response bodies over 1 MiB.
const MAX_BODY: usize = 1 << 20;

pub(super) fn redirect(raw: &rv::HttpRedirect, at: &Path) -> FieldResult<Redirect> {
    at_most_one(at, &[("port", raw.port.is_some()), ("derivePort", raw.derive_port.is_some())], "set one")?;
    if raw.uri.is_none()
        && raw.authority.is_none()
        && raw.port.is_none()
        && raw.derive_port.is_none()
        && raw.scheme.is_none()
    {
        return Err(at.err("redirect must specify uri, authority, scheme, port or derivePort"));
    }
    let code = match raw.redirect_code {
        None | Some(0) => 301,
        Some(c) => u16::try_from(c).ok().filter(|c| (300..=399).contains(c)).ok_or_else(|| {
            at.key("redirectCode").err(format!("{c} is not a valid redirect code; it must be 3xx (e.g. 301, 302, 308)"))
        })?,
    };
    if let Some(s) = raw.scheme.as_deref().filter(|s| !matches!(*s, "http" | "https")) {
        return Err(at.key("scheme").err(format!("redirect scheme {s:?} must be \"http\" or \"https\"")));
    }
    let port = match (raw.port, raw.derive_port.as_deref()) {
        (Some(p), _) => Some(RedirectPort::Number(port(p, &at.key("port"))?)),
        (None, Some("FROM_PROTOCOL_DEFAULT")) => Some(RedirectPort::FromProtocolDefault),
        (None, Some("FROM_REQUEST_PORT")) => Some(RedirectPort::FromRequestPort),
        (None, Some(other)) => {
            return Err(at
                .key("derivePort")
                .err(format!("{other:?} is not one of FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT")));
        }
        (None, None) => None,
    };
    Ok(Redirect { uri: raw.uri.clone(), authority: raw.authority.clone(), port, scheme: raw.scheme.clone(), code })
}

pub(super) fn direct_response(raw: &rv::HttpDirectResponse, at: &Path) -> FieldResult<DirectResponse> {
    let status = http_status(raw.status, &at.key("status"))?;
    let body = match &raw.body {
        None => None,
        Some(b) => {
            let at = at.key("body");
            let body = match (&b.string, &b.bytes) {
                (Some(s), None) => Body::String(s.clone()),
                (None, Some(b64)) => Body::Bytes(base64_decode(b64).map_err(|e| at.key("bytes").err(e))?),
                (None, None) => return Err(at.err("body needs one of string or bytes")),
                (Some(_), Some(_)) => return Err(at.err("string and bytes are mutually exclusive; set one")),
            };
            let len = match &body {
                Body::String(s) => s.len(),
                Body::Bytes(b) => b.len(),
            };
            if len > MAX_BODY {
                return Err(at.err(format!("body is {len} bytes; direct responses must be under 1 MiB")));
            }
            Some(body)
        }
    };
    Ok(DirectResponse { status, body })
}

fn http_status(value: i64, at: &Path) -> FieldResult<u16> {
    u16::try_from(value)
        .ok()
        .filter(|s| (200..=599).contains(s))
        .ok_or_else(|| at.err(format!("HTTP status {value} is not in range 200..599")))
}

pub(super) fn rewrite(raw: &rv::HttpRewrite, at: &Path) -> FieldResult<Rewrite> {
    at_most_one(at, &[("uri", raw.uri.is_some()), ("uriRegexRewrite", raw.uri_regex_rewrite.is_some())], "set one")?;
    let uri = match (&raw.uri, &raw.uri_regex_rewrite) {
        (Some(u), _) => Some(UriRewrite::Prefix(u.clone())),
        (None, Some(r)) => {
            let at = at.key("uriRegexRewrite");
            let (Some(m), Some(rewrite)) = (&r.pattern, &r.rewrite) else {
                return Err(at.err("uriRegexRewrite needs both match and rewrite"));
            };
            let pattern = Pattern::for_search(m).map_err(|e| at.key("match").err(e))?;
            Some(UriRewrite::Regex { pattern, rewrite: rewrite.clone() })
        }
        (None, None) => None,
    };
    if uri.is_none() && raw.authority.is_none() {
        return Err(at.err("rewrite must specify uri, uriRegexRewrite or authority"));
    }
    Ok(Rewrite { uri, authority: raw.authority.clone() })
}

pub(super) fn retry(raw: &rv::HttpRetry, at: &Path) -> FieldResult<Retry> {
    let attempts = u32::try_from(raw.attempts)
        .map_err(|_| at.key("attempts").err(format!("attempts {} must not be negative", raw.attempts)))?;
    if attempts == 0
        && (raw.per_try_timeout.is_some() || raw.retry_on.is_some() || raw.retry_remote_localities.is_some())
    {
        return Err(at.err("retry policy configured while attempts is 0 (retries disabled); set attempts"));
    }
    let mut retry_on = Vec::new();
    if let Some(list) = &raw.retry_on {
        for policy in list.split(',').map(str::trim) {
            retry_on.push(retry_on_policy(policy).ok_or_else(|| {
                let names: Vec<&str> = RetryOn::NAMED.iter().map(|(n, _)| *n).collect();
                at.key("retryOn").err(format!(
                    "{policy:?} is not a valid retryOn policy; use {} or an HTTP status code",
                    names.join(", ")
                ))
            })?);
        }
    }
    Ok(Retry {
        attempts,
        per_try_timeout: opt_duration(raw.per_try_timeout.as_ref(), &at.key("perTryTimeout"))?,
        retry_on,
        retry_remote_localities: raw.retry_remote_localities,
        retry_ignore_previous_hosts: raw.retry_ignore_previous_hosts,
        backoff: opt_duration(raw.backoff.as_ref(), &at.key("backoff"))?,
    })
}

fn retry_on_policy(policy: &str) -> Option<RetryOn> {
    if let Some((_, p)) = RetryOn::NAMED.iter().find(|(n, _)| *n == policy) {
        return Some(*p);
    }
    policy.parse::<u16>().ok().filter(|c| (100..=599).contains(c)).map(RetryOn::Status)
}

pub(super) fn fault(raw: &rv::HttpFaultInjection, at: &Path) -> FieldResult<Fault> {
    if raw.delay.is_none() && raw.abort.is_none() {
        return Err(at.err("fault injection needs a delay and/or an abort"));
    }
    let delay = raw.delay.as_ref().map(|d| delay(d, &at.key("delay"))).transpose()?;
    let abort = raw.abort.as_ref().map(|a| abort(a, &at.key("abort"))).transpose()?;
    Ok(Fault { delay, abort })
}

fn delay(raw: &rv::Delay, at: &Path) -> FieldResult<Delay> {
    if raw.exponential_delay.is_some() {
        return Err(at.key("exponentialDelay").err(unsupported("exponentialDelay", "use fixedDelay")));
    }
    let Some(fixed) = &raw.fixed_delay else {
        return Err(at.err("delay needs fixedDelay (e.g. fixedDelay: 5s)"));
    };
    let fixed_delay = duration(fixed, &at.key("fixedDelay"))?;
    Ok(Delay { fixed_delay, percentage: fault_percentage(raw.percentage.as_ref(), raw.percent, at)? })
}

/// `percentage`, else the deprecated integer `percent`; unset means no request is affected.
fn fault_percentage(
    p: Option<&crate::config::raw::common::Percent>,
    int: Option<i64>,
    at: &Path,
) -> FieldResult<Percent> {
    at_most_one(at, &[("percentage", p.is_some()), ("percent", int.is_some())], "use percentage")?;
    if let Some(p) = p {
        return percent(p, &at.key("percentage"));
    }
    let int = int_percent(int, &at.key("percent"))?;
    Ok(int.and_then(|v| Percent::new(f64::from(v))).unwrap_or(Percent::ZERO))
}

fn abort(raw: &rv::Abort, at: &Path) -> FieldResult<Abort> {
    let kinds = [
        ("httpStatus", raw.http_status.is_some()),
        ("grpcStatus", raw.grpc_status.is_some()),
        ("http2Error", raw.http2_error.is_some()),
    ];
    at_most_one(at, &kinds, "an abort returns one kind of error")?;
    let error = if let Some(s) = raw.http_status {
        AbortError::HttpStatus(http_status(s, &at.key("httpStatus"))?)
    } else if let Some(name) = &raw.grpc_status {
        let status = GrpcStatus::ALL.iter().find(|(n, _)| n == name).map(|(_, s)| *s).ok_or_else(|| {
            at.key("grpcStatus").err(format!(
                "gRPC status {name:?} is not supported; use a canonical name such as NOT_FOUND or UNAVAILABLE"
            ))
        })?;
        AbortError::GrpcStatus(status)
    } else if raw.http2_error.is_some() {
        return Err(at.key("http2Error").err(unsupported("http2Error aborts", "use httpStatus or grpcStatus")));
    } else {
        return Err(at.err("abort needs one of httpStatus or grpcStatus"));
    };
    let percentage = match &raw.percentage {
        Some(p) => percent(p, &at.key("percentage"))?,
        None => Percent::ZERO,
    };
    Ok(Abort { error, percentage })
}

/// `mirror` (+ `mirrorPercentage` / deprecated `mirrorPercent`) and `mirrors`, as one list.
pub(super) fn mirrors(raw: &rv::HttpRoute, at: &Path) -> FieldResult<Vec<Mirror>> {
    at_most_one(at, &[("mirror", raw.mirror.is_some()), ("mirrors", !raw.mirrors.is_empty())], "use mirrors")?;
    let percents =
        [("mirrorPercentage", raw.mirror_percentage.is_some()), ("mirrorPercent", raw.mirror_percent.is_some())];
    at_most_one(at, &percents, "use mirrorPercentage")?;
    let mut out = Vec::new();
    if let Some(d) = &raw.mirror {
        let percentage = match (&raw.mirror_percentage, raw.mirror_percent) {
            (Some(p), _) => percent(p, &at.key("mirrorPercentage"))?,
            (None, Some(i)) => int_percent(Some(i), &at.key("mirrorPercent"))?
                .and_then(|v| Percent::new(f64::from(v)))
                .unwrap_or(Percent::HUNDRED),
            (None, None) => Percent::HUNDRED,
        };
        out.push(Mirror { destination: destination(d, &at.key("mirror"))?, percentage, from_mirror_field: true });
    }
    for (i, m) in raw.mirrors.iter().enumerate() {
        let at = at.key("mirrors").index(i);
        let percentage = match &m.percentage {
            Some(p) => percent(p, &at.key("percentage"))?,
            None => Percent::HUNDRED,
        };
        out.push(Mirror {
            destination: destination(&m.destination, &at.key("destination"))?,
            percentage,
            from_mirror_field: false,
        });
    }
    Ok(out)
}

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"];

pub(super) fn cors(raw: &rv::CorsPolicy, at: &Path) -> FieldResult<Cors> {
    let both = [("allowOrigins", !raw.allow_origins.is_empty()), ("allowOrigin", !raw.allow_origin.is_empty())];
    at_most_one(at, &both, "allowOrigin is deprecated, use allowOrigins")?;
    let mut allow_origins = Vec::new();
    for (i, o) in raw.allow_origins.iter().enumerate() {
        let at = at.key("allowOrigins").index(i);
        let m = string_match(o, &at)?;
        if matches!(&m, StringMatch::Exact(s) | StringMatch::Prefix(s) if s.is_empty()) {
            return Err(at.err("an empty origin is not a valid CORS allowOrigins match"));
        }
        allow_origins.push(m);
    }
    for o in &raw.allow_origin {
        allow_origins.push(if o == "*" { StringMatch::Prefix(String::new()) } else { StringMatch::Exact(o.clone()) });
    }
    for (i, m) in raw.allow_methods.iter().enumerate() {
        if !METHODS.contains(&m.as_str()) {
            return Err(at.key("allowMethods").index(i).err(format!("{m:?} is not a supported HTTP method")));
        }
    }
    for (field, list) in [("allowHeaders", &raw.allow_headers), ("exposeHeaders", &raw.expose_headers)] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" {
                super::header_name(h).map_err(|e| at.key(field).index(i).err(e))?;
            }
        }
    }
    let max_age = opt_duration(raw.max_age.as_ref(), &at.key("maxAge"))?;
    if max_age.is_some_and(|d| d.as_std().subsec_nanos() != 0) {
        return Err(at.key("maxAge").err("maxAge is accurate only to whole seconds"));
    }
    let unmatched_preflights = match raw.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED" | "FORWARD") => UnmatchedPreflights::Forward,
        Some("IGNORE") => UnmatchedPreflights::Ignore,
        Some(other) => {
            return Err(at
                .key("unmatchedPreflights")
                .err(format!("{other:?} is not one of UNSPECIFIED, FORWARD, IGNORE")));
        }
    };
    Ok(Cors {
        allow_origins,
        allow_methods: raw.allow_methods.clone(),
        allow_headers: raw.allow_headers.clone(),
        expose_headers: raw.expose_headers.clone(),
        max_age,
        allow_credentials: raw.allow_credentials,
        unmatched_preflights,
    })
}

/// Standard base64 (protobuf JSON's encoding of `bytes`), padding optional.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(format!("bytes is not valid base64 (found {:?})", char::from(c))),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(super::base64_decode("aGk").unwrap(), b"hi");
        assert!(super::base64_decode("a$b").is_err());
    }
}
