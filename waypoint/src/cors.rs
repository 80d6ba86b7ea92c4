//! `corsPolicy`, as Envoy's CORS filter applies it on a route: preflights from an allowed
//! origin are answered by the waypoint; other requests from an allowed origin go upstream and
//! their responses get the CORS headers; everything else passes untouched — except preflights
//! from an origin that matches nothing, which go upstream or are answered without CORS headers
//! (`unmatchedPreflights`).

use ambit_common::api::v1::{CorsPolicy, CorsUnmatchedPreflights};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::route::StringCondition;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    #[error("corsPolicy.allowOrigins[{index}]: {reason}")]
    Origin { index: usize, reason: String },
    #[error("corsPolicy.{field}: {value:?} is not a valid header value")]
    Value { field: &'static str, value: String },
}

/// What to do with a request under a route's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDecision {
    /// Forward it; add these headers to its response (none when CORS does not apply).
    Forward { response_headers: HeaderMap },
    /// Answer the preflight here: 200 with these headers (none for an ignored preflight).
    AnswerPreflight { headers: HeaderMap },
}

/// A compiled CORS policy.
pub struct Cors {
    origins: Vec<StringCondition>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    allow_credentials: bool,
    forward_unmatched_preflights: bool,
}

impl Cors {
    pub fn compile(policy: &CorsPolicy) -> Result<Self, CorsError> {
        let origins = policy
            .allow_origins
            .iter()
            .enumerate()
            .map(|(index, m)| StringCondition::compile(m).map_err(|reason| CorsError::Origin { index, reason }))
            .collect::<Result<Vec<_>, _>>()?;
        let list = |field: &'static str, items: &[String]| -> Result<Option<HeaderValue>, CorsError> {
            if items.is_empty() {
                return Ok(None);
            }
            let value = items.join(",");
            HeaderValue::from_str(&value).map(Some).map_err(|_| CorsError::Value { field, value })
        };
        Ok(Self {
            origins,
            allow_methods: list("allowMethods", &policy.allow_methods)?,
            allow_headers: list("allowHeaders", &policy.allow_headers)?,
            expose_headers: list("exposeHeaders", &policy.expose_headers)?,
            max_age: policy.max_age_seconds.map(HeaderValue::from),
            allow_credentials: policy.allow_credentials == Some(true),
            forward_unmatched_preflights: policy.unmatched_preflights != CorsUnmatchedPreflights::Ignore as i32,
        })
    }

    /// The decision for a request with `method` and `headers`.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> CorsDecision {
        let forward = || CorsDecision::Forward { response_headers: HeaderMap::new() };
        let Some(origin) = headers.get(header::ORIGIN) else { return forward() };
        let preflight = method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let allowed = origin.to_str().is_ok_and(|o| self.origins.iter().any(|c| c.holds(o)));
        match (allowed, preflight) {
            (true, true) => {
                let mut answer = self.common(origin);
                put(&mut answer, header::ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods);
                put(&mut answer, header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers);
                put(&mut answer, header::ACCESS_CONTROL_MAX_AGE, &self.max_age);
                CorsDecision::AnswerPreflight { headers: answer }
            }
            (true, false) => {
                let mut response_headers = self.common(origin);
                put(&mut response_headers, header::ACCESS_CONTROL_EXPOSE_HEADERS, &self.expose_headers);
                CorsDecision::Forward { response_headers }
            }
            (false, true) if !self.forward_unmatched_preflights => {
                CorsDecision::AnswerPreflight { headers: HeaderMap::new() }
            }
            (false, _) => forward(),
        }
    }

    /// Allow-Origin (the request's origin, echoed) and Allow-Credentials.
    fn common(&self, origin: &HeaderValue) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        headers
    }
}

fn put(headers: &mut HeaderMap, name: HeaderName, value: &Option<HeaderValue>) {
    if let Some(value) = value {
        headers.insert(name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use ambit_common::api::v1::{StringMatcher, string_matcher::Kind};

    use super::*;

    fn policy() -> CorsPolicy {
        // Istio's corsPolicy example.
        CorsPolicy {
            allow_origins: vec![StringMatcher { kind: Some(Kind::Exact("https://example.com".into())) }],
            allow_methods: vec!["POST".into(), "GET".into()],
            allow_headers: vec!["X-Foo-Bar".into()],
            expose_headers: vec!["X-Expose".into()],
            max_age_seconds: Some(86_400),
            allow_credentials: Some(false),
            unmatched_preflights: CorsUnmatchedPreflights::Forward as i32,
        }
    }

    fn request(origin: Option<&str>, preflight: bool) -> (Method, HeaderMap) {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        if preflight {
            headers.insert(header::ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("POST"));
            return (Method::OPTIONS, headers);
        }
        (Method::GET, headers)
    }

    fn decide(cors: &Cors, origin: Option<&str>, preflight: bool) -> CorsDecision {
        let (method, headers) = request(origin, preflight);
        cors.decide(&method, &headers)
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_answered_with_the_policy() {
        let cors = Cors::compile(&policy()).unwrap();
        let CorsDecision::AnswerPreflight { headers } = decide(&cors, Some("https://example.com"), true) else {
            panic!("answered here")
        };
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://example.com");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST,GET");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS], "X-Foo-Bar");
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "86400");
        assert!(
            !headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            "allowCredentials: false sends nothing"
        );
        assert!(!headers.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS), "expose is for actual responses");
    }

    #[test]
    fn an_actual_request_from_an_allowed_origin_is_forwarded_and_its_response_gets_cors_headers() {
        let mut with_credentials = policy();
        with_credentials.allow_credentials = Some(true);
        let cors = Cors::compile(&with_credentials).unwrap();
        let CorsDecision::Forward { response_headers } = decide(&cors, Some("https://example.com"), false) else {
            panic!("forwarded")
        };
        assert_eq!(response_headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://example.com");
        assert_eq!(response_headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "X-Expose");
        assert_eq!(response_headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn requests_without_an_allowed_origin_pass_untouched_and_unmatched_preflights_follow_the_policy() {
        let cors = Cors::compile(&policy()).unwrap();
        let untouched = CorsDecision::Forward { response_headers: HeaderMap::new() };
        assert_eq!(decide(&cors, None, false), untouched, "not a CORS request");
        assert_eq!(decide(&cors, Some("https://evil.example"), false), untouched);
        assert_eq!(
            decide(&cors, Some("https://evil.example"), true),
            untouched,
            "FORWARD: the preflight goes upstream"
        );
        let mut ignore = policy();
        ignore.unmatched_preflights = CorsUnmatchedPreflights::Ignore as i32;
        let cors = Cors::compile(&ignore).unwrap();
        assert_eq!(
            decide(&cors, Some("https://evil.example"), true),
            CorsDecision::AnswerPreflight { headers: HeaderMap::new() }
        );
        // An OPTIONS without Access-Control-Request-Method is not a preflight.
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://example.com"));
        assert!(matches!(cors.decide(&Method::OPTIONS, &headers), CorsDecision::Forward { .. }));
    }

    #[test]
    fn origins_match_exact_prefix_and_regex() {
        let mut p = policy();
        p.allow_origins = vec![
            StringMatcher { kind: Some(Kind::Prefix("https://app.".into())) },
            StringMatcher { kind: Some(Kind::Regex("https://[a-z]+\\.example\\.org".into())) },
        ];
        let cors = Cors::compile(&p).unwrap();
        let allowed = |o| matches!(decide(&cors, Some(o), true), CorsDecision::AnswerPreflight { headers } if !headers.is_empty());
        assert!(allowed("https://app.example.com"));
        assert!(allowed("https://docs.example.org"));
        assert!(!allowed("https://docs.example.org.evil"), "regex matches the whole origin");
        let mut bad = policy();
        bad.allow_origins = vec![StringMatcher { kind: Some(Kind::Regex("(".into())) }];
        assert!(matches!(Cors::compile(&bad), Err(CorsError::Origin { index: 0, .. })));
    }
}
