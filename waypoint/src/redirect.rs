//! `redirect`: the `Location` a redirect route answers with, built from the request the way
//! Envoy's redirect action builds it.
//!
//! - the path replaces the request's path; the request's query is kept unless the new path
//!   carries its own (Envoy's `path_redirect` without `strip_query`);
//! - a new authority replaces the request's host *and drops its port* (Envoy cleans the port up
//!   unless a port is given: envoyproxy/envoy#17318);
//! - a port replaces the port; without one, a scheme change drops a port of 80 or 443, the
//!   defaults it would otherwise carry over to the wrong scheme.

use ambit_common::api::v1::Redirect;
use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("redirect status {0} is not one of 301, 302, 303, 307, 308")]
    Status(u32),
    #[error("redirect scheme {0:?} is neither http nor https")]
    Scheme(String),
    #[error("redirect port {0} is out of range")]
    Port(u32),
}

/// A validated redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectAction {
    redirect: Redirect,
    status: StatusCode,
}

impl RedirectAction {
    pub fn compile(redirect: &Redirect) -> Result<Self, RedirectError> {
        let status = match redirect.status {
            301 | 302 | 303 | 307 | 308 => {
                StatusCode::from_u16(redirect.status as u16).map_err(|_| RedirectError::Status(redirect.status))?
            }
            other => return Err(RedirectError::Status(other)),
        };
        if !matches!(redirect.scheme.as_str(), "" | "http" | "https") {
            return Err(RedirectError::Scheme(redirect.scheme.clone()));
        }
        if redirect.port > u32::from(u16::MAX) {
            return Err(RedirectError::Port(redirect.port));
        }
        Ok(Self { redirect: redirect.clone(), status })
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Location` for a request with `scheme`, `authority` and `path_and_query`.
    pub fn location(&self, scheme: &str, authority: &str, path_and_query: &str) -> String {
        let r = &self.redirect;
        let new_scheme = if r.scheme.is_empty() { scheme } else { r.scheme.as_str() };
        let (host, port) = split_port(authority);
        let (host, mut port) = if r.authority.is_empty() { (host, port) } else { (r.authority.as_str(), None) };
        if r.port != 0 {
            port = Some(r.port as u16);
        } else if new_scheme != scheme && matches!(port, Some(80 | 443)) {
            port = None;
        }
        let (old_path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let path = if r.path.is_empty() { old_path } else { r.path.as_str() };
        let mut location = format!("{new_scheme}://{host}");
        if let Some(port) = port {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(path);
        if let Some(query) = query.filter(|_| !path.contains('?')) {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// `host[:port]` (an IPv6 host in brackets keeps its colons).
fn split_port(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && (host.ends_with(']') || !host.contains(':')) => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(path: &str, authority: &str, scheme: &str, port: u32, status: u32) -> RedirectAction {
        let redirect = Redirect { path: path.into(), authority: authority.into(), scheme: scheme.into(), port, status };
        RedirectAction::compile(&redirect).unwrap()
    }

    #[test]
    fn istio_redirect_example_keeps_the_query_and_answers_with_the_status() {
        // VirtualService docs: match /v1/getProductRatings, redirect uri /v1/bookRatings authority newratings.default.svc.cluster.local.
        let r = action("/v1/bookRatings", "newratings.default.svc.cluster.local", "", 0, 301);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.location("http", "ratings:9080", "/v1/getProductRatings?id=1"),
            "http://newratings.default.svc.cluster.local/v1/bookRatings?id=1",
            "a new authority drops the request's port"
        );
    }

    #[test]
    fn each_part_is_kept_unless_replaced() {
        let keep_all = action("", "", "", 0, 302);
        assert_eq!(keep_all.location("http", "web:8080", "/a?b"), "http://web:8080/a?b");
        let port = action("", "", "", 8443, 307);
        assert_eq!(port.location("http", "web:8080", "/a"), "http://web:8443/a");
        let new_query = action("/login?next=home", "", "", 0, 302);
        assert_eq!(
            new_query.location("http", "web", "/a?b=1"),
            "http://web/login?next=home",
            "the new path's query wins"
        );
    }

    #[test]
    fn a_scheme_change_drops_a_default_port_only() {
        let https = action("", "", "https", 0, 301);
        assert_eq!(https.location("http", "web:80", "/"), "https://web/");
        assert_eq!(https.location("http", "web:8080", "/"), "https://web:8080/");
        assert_eq!(https.location("https", "web:443", "/"), "https://web:443/", "no change, nothing dropped");
        let with_port = action("", "", "https", 8443, 308);
        assert_eq!(with_port.location("http", "web:80", "/x"), "https://web:8443/x");
        assert_eq!(https.location("http", "[fd00::1]:80", "/"), "https://[fd00::1]/");
    }

    #[test]
    fn invalid_redirects_are_refused() {
        let redirect =
            |status, scheme: &str, port| Redirect { status, scheme: scheme.into(), port, ..Default::default() };
        assert_eq!(RedirectAction::compile(&redirect(200, "", 0)), Err(RedirectError::Status(200)));
        assert_eq!(RedirectAction::compile(&redirect(301, "ftp", 0)), Err(RedirectError::Scheme("ftp".into())));
        assert_eq!(RedirectAction::compile(&redirect(301, "", 70_000)), Err(RedirectError::Port(70_000)));
    }
}
