//! The control headers a test sends to script the server's answer, and the per-key attempt
//! counts behind `x-httpapp-fail-first`.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use http::{HeaderMap, StatusCode};

/// Answer with this status.
pub(super) const STATUS: &str = "x-httpapp-status";
/// Wait this many milliseconds before answering.
pub(super) const DELAY_MS: &str = "x-httpapp-delay-ms";
/// Fail the first N requests carrying the same `x-httpapp-key`.
pub(super) const FAIL_FIRST: &str = "x-httpapp-fail-first";
/// Answer 503 when this server's `--name` is one of these (comma-separated): makes chosen
/// endpoints of a service fail, e.g. for outlier detection.
pub(super) const FAIL_ON: &str = "x-httpapp-fail-on";
/// Groups requests for `x-httpapp-fail-first` (absent: one group for all requests without it).
pub(super) const KEY: &str = "x-httpapp-key";
/// `brief`: answer `{"servedBy": <name>}` only, not the echo of the request (whose size would
/// grow with every header a proxy adds: benchmarks compare proxies, not their headers).
pub(super) const REPLY: &str = "x-httpapp-reply";

/// What the control headers of one request ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Script {
    pub(super) status: Option<StatusCode>,
    pub(super) delay: Duration,
    /// `(n, key)`: fail while fewer than `n` earlier requests with `key` were seen.
    pub(super) fail_first: Option<(u64, String)>,
    /// Server names that answer 503.
    pub(super) fail_on: Vec<String>,
    /// Answer with the server's name only.
    pub(super) brief: bool,
}

impl Script {
    /// Reads the control headers; a malformed one is an error naming it (the server answers 400).
    pub(super) fn from_headers(headers: &HeaderMap) -> Result<Self, String> {
        let status = match text(headers, STATUS)? {
            None => None,
            Some(v) => Some(
                v.parse::<u16>()
                    .ok()
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| format!("{STATUS} {v:?}: expected a status code (100-999)"))?,
            ),
        };
        let delay = Duration::from_millis(number(headers, DELAY_MS)?.unwrap_or(0));
        let fail_first = number(headers, FAIL_FIRST)?.map(|n| {
            let key = headers.get(KEY).map(|k| String::from_utf8_lossy(k.as_bytes()).into_owned());
            (n, key.unwrap_or_default())
        });
        let fail_on = text(headers, FAIL_ON)?
            .map(|names| names.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect())
            .unwrap_or_default();
        let brief = match text(headers, REPLY)? {
            None => false,
            Some("brief") => true,
            Some(other) => return Err(format!("{REPLY} {other:?}: expected brief")),
        };
        Ok(Self { status, delay, fail_first, fail_on, brief })
    }

    /// Whether the server named `name` is told to fail this request.
    pub(super) fn fails_on(&self, name: &str) -> bool {
        self.fail_on.iter().any(|n| n == name)
    }

    /// Whether this request is one of the first n of its key (counting it as seen).
    pub(super) fn fails_first(&self, attempts: &Attempts) -> bool {
        self.fail_first.as_ref().is_some_and(|(n, key)| attempts.record(key) <= *n)
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|v| Some(v.trim())).map_err(|_| format!("{name}: not visible ASCII")),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    match text(headers, name)? {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| format!("{name} {v:?}: expected a whole number")),
    }
}

/// How many requests each `x-httpapp-key` has had (shared by every connection of a server).
#[derive(Debug, Default)]
pub(super) struct Attempts {
    seen: Mutex<HashMap<String, u64>>,
}

impl Attempts {
    /// Counts one more request with `key`; returns its 1-based attempt number.
    fn record(&self, key: &str) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.entry(key.to_owned()).or_insert(0);
        *count += 1;
        *count
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn no_control_headers_is_a_plain_answer() {
        assert_eq!(Script::from_headers(&headers(&[("x-other", "1")])), Ok(Script::default()));
    }

    #[test]
    fn reads_status_delay_and_fail_first() {
        let script =
            Script::from_headers(&headers(&[(STATUS, "418"), (DELAY_MS, " 25 "), (FAIL_FIRST, "2"), (KEY, "req-7")]))
                .unwrap();
        assert_eq!(script.status, Some(StatusCode::IM_A_TEAPOT));
        assert_eq!(script.delay, Duration::from_millis(25));
        assert_eq!(script.fail_first, Some((2, "req-7".to_owned())));
        assert!(!script.brief && Script::from_headers(&headers(&[(REPLY, "brief")])).unwrap().brief);
    }

    #[test]
    fn fail_on_names_the_servers_that_answer_503() {
        let script = Script::from_headers(&headers(&[(FAIL_ON, "echo-bad, other")])).unwrap();
        assert!(script.fails_on("echo-bad") && script.fails_on("other"));
        assert!(!script.fails_on("echo-good"), "servers not named answer normally");
        assert!(!Script::default().fails_on("echo-bad"));
    }

    #[test]
    fn malformed_control_headers_name_the_header() {
        for (name, value) in [(STATUS, "abc"), (STATUS, "42"), (DELAY_MS, "-1"), (FAIL_FIRST, "x"), (REPLY, "long")] {
            let err = Script::from_headers(&headers(&[(name, value)])).unwrap_err();
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn fail_first_counts_per_key() {
        let attempts = Attempts::default();
        let a = Script::from_headers(&headers(&[(FAIL_FIRST, "2"), (KEY, "a")])).unwrap();
        let b = Script::from_headers(&headers(&[(FAIL_FIRST, "1"), (KEY, "b")])).unwrap();
        let plain = Script::default();
        assert!(a.fails_first(&attempts));
        assert!(b.fails_first(&attempts));
        assert!(!plain.fails_first(&attempts));
        assert!(a.fails_first(&attempts));
        assert!(!b.fails_first(&attempts));
        assert!(!a.fails_first(&attempts));
        assert!(!a.fails_first(&attempts));
    }

    #[test]
    fn fail_first_without_a_key_shares_one_count() {
        let attempts = Attempts::default();
        let script = Script::from_headers(&headers(&[(FAIL_FIRST, "1")])).unwrap();
        assert!(script.fails_first(&attempts));
        assert!(!script.fails_first(&attempts));
    }
}
