//! `rewrite` of a forwarded request: the path (Envoy's `prefix_rewrite` or `regex_rewrite`, as
//! the control plane compiled Istio's `rewrite.uri` / `rewrite.uriRegexRewrite`) and the
//! authority (`rewrite.authority`, per destination). Compiled once; applied to the path and
//! query of each request (the query string is never rewritten, only carried over).

use ambit_common::{
    api::v1::{RegexRewrite, StringMatcher, forward::PathRewrite, string_matcher::Kind},
    config::Pattern,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("uriRegexRewrite: {0}")]
    Regex(String),
    #[error("uriRegexRewrite: substitution {substitution:?}: {reason}")]
    Substitution { substitution: String, reason: String },
    #[error("rewrite.authority: {authority:?} is not a valid authority (host[:port])")]
    Authority { authority: String },
}

/// Points a request at `authority` (`rewrite.authority`): its `Host` header, and its URI's
/// authority when it has one (HTTP/2 `:authority`, an absolute-form HTTP/1.1 target).
pub fn set_authority(parts: &mut http::request::Parts, authority: &str) -> Result<(), RewriteError> {
    let invalid = || RewriteError::Authority { authority: authority.to_owned() };
    let parsed: http::uri::Authority = authority.parse().map_err(|_| invalid())?;
    let host = http::HeaderValue::from_str(authority).map_err(|_| invalid())?;
    if parts.uri.authority().is_some() {
        let mut uri = parts.uri.clone().into_parts();
        uri.authority = Some(parsed);
        parts.uri = http::Uri::from_parts(uri).map_err(|_| invalid())?;
    }
    parts.headers.insert(http::header::HOST, host);
    Ok(())
}

/// How a route rewrites the path of the requests it forwards.
#[derive(Clone)]
pub enum PathRewriter {
    /// Replace the part of the path the route's `uri` match matched.
    Prefix { matched: Matched, replacement: String },
    /// Replace every match of the pattern in the path.
    Regex { pattern: Pattern, substitution: String },
}

/// What part of the path a route's `uri` match covers (so a prefix rewrite knows what to replace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matched {
    /// A prefix match: these many leading bytes.
    Prefix(usize),
    /// An exact or regex match: the whole path.
    Whole,
    /// No `uri` match: the leading "/".
    Root,
}

impl PathRewriter {
    /// The rewriter of a route whose match has `uri` (if any).
    pub fn compile(rewrite: &PathRewrite, uri: Option<&StringMatcher>) -> Result<Self, RewriteError> {
        match rewrite {
            PathRewrite::PrefixRewrite(replacement) => {
                let matched = match uri.and_then(|m| m.kind.as_ref()) {
                    Some(Kind::Prefix(prefix)) => Matched::Prefix(prefix.len()),
                    Some(Kind::Exact(_) | Kind::Regex(_)) => Matched::Whole,
                    None => Matched::Root,
                };
                Ok(Self::Prefix { matched, replacement: replacement.clone() })
            }
            PathRewrite::RegexRewrite(RegexRewrite { pattern, substitution }) => Ok(Self::Regex {
                pattern: Pattern::for_search(pattern).map_err(RewriteError::Regex)?,
                substitution: to_regex_crate_syntax(substitution)?,
            }),
        }
    }

    /// The new `path[?query]` for `path_and_query`.
    pub fn rewrite(&self, path_and_query: &str) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut rewritten = match self {
            Self::Prefix { matched, replacement } => {
                let cut = match matched {
                    // The match held, so the path is at least this long; `get` guards a caller
                    // that rewrites a path the route did not match.
                    Matched::Prefix(len) => *len,
                    Matched::Whole => path.len(),
                    Matched::Root => usize::from(path.starts_with('/')),
                };
                match path.get(cut..) {
                    Some(rest) => format!("{replacement}{rest}"),
                    None => replacement.clone(),
                }
            }
            Self::Regex { pattern, substitution } => {
                pattern.regex().replace_all(path, substitution.as_str()).into_owned()
            }
        };
        if rewritten.is_empty() {
            rewritten.push('/');
        }
        if let Some(query) = query {
            rewritten.push('?');
            rewritten.push_str(query);
        }
        rewritten
    }
}

/// Envoy (RE2) writes groups as `\1`; the regex crate as `${1}`, and `$` is literal in RE2's
/// substitutions but special in the regex crate's.
fn to_regex_crate_syntax(substitution: &str) -> Result<String, RewriteError> {
    let mut out = String::with_capacity(substitution.len());
    let mut chars = substitution.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => out.push_str(&format!("${{{d}}}")),
                Some('\\') => out.push('\\'),
                other => {
                    return Err(RewriteError::Substitution {
                        substitution: substitution.to_owned(),
                        reason: format!(
                            "\\{} is not a group reference; write groups as \\1..\\9 and a backslash as \\\\",
                            other.map(String::from).unwrap_or_default()
                        ),
                    });
                }
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix_rewriter(uri: Option<Kind>, replacement: &str) -> PathRewriter {
        let matcher = uri.map(|kind| StringMatcher { kind: Some(kind) });
        PathRewriter::compile(&PathRewrite::PrefixRewrite(replacement.into()), matcher.as_ref()).unwrap()
    }

    fn regex_rewriter(pattern: &str, substitution: &str) -> Result<PathRewriter, RewriteError> {
        let rewrite = RegexRewrite { pattern: pattern.into(), substitution: substitution.into() };
        PathRewriter::compile(&PathRewrite::RegexRewrite(rewrite), None)
    }

    #[test]
    fn a_prefix_rewrite_replaces_what_the_prefix_matched_and_keeps_the_rest_and_the_query() {
        // Istio's example: match prefix /ratings, rewrite uri /v1/bookRatings.
        let r = prefix_rewriter(Some(Kind::Prefix("/ratings".into())), "/v1/bookRatings");
        assert_eq!(r.rewrite("/ratings/2?x=1"), "/v1/bookRatings/2?x=1");
        assert_eq!(r.rewrite("/ratings"), "/v1/bookRatings");
        // With ignoreUriCase the prefix matched in any case: the same length is replaced.
        assert_eq!(r.rewrite("/RATINGS/2"), "/v1/bookRatings/2");
    }

    #[test]
    fn exact_and_regex_matches_rewrite_the_whole_path_and_no_match_rewrites_the_root() {
        let exact = prefix_rewriter(Some(Kind::Exact("/old".into())), "/new");
        assert_eq!(exact.rewrite("/old?q"), "/new?q");
        let regex = prefix_rewriter(Some(Kind::Regex("/v[0-9]+/.*".into())), "/api");
        assert_eq!(regex.rewrite("/v2/items"), "/api");
        let none = prefix_rewriter(None, "/app/");
        assert_eq!(none.rewrite("/index.html"), "/app/index.html");
        let to_empty = prefix_rewriter(Some(Kind::Prefix("/strip".into())), "");
        assert_eq!(to_empty.rewrite("/strip"), "/", "an empty path becomes /");
    }

    #[test]
    fn a_regex_rewrite_substitutes_every_match_with_re2_group_syntax() {
        // Istio's uriRegexRewrite example.
        let r = regex_rewriter("^/service/([^/]+)(/.*)$", "\\2/instance/\\1").unwrap();
        assert_eq!(r.rewrite("/service/foo/v1/api?debug=1"), "/v1/api/instance/foo?debug=1");
        let every = regex_rewriter("o", "0").unwrap();
        assert_eq!(every.rewrite("/foo/boo"), "/f00/b00", "every match, unanchored");
        let dollar = regex_rewriter("x", "$1\\\\").unwrap();
        assert_eq!(dollar.rewrite("/x"), "/$1\\", "$ is literal, \\\\ is a backslash");
    }

    #[test]
    fn the_authority_is_rewritten_in_the_host_header_and_an_absolute_uri() {
        let (mut h1, ()) = http::Request::get("/a?b").header("host", "old:80").body(()).unwrap().into_parts();
        set_authority(&mut h1, "new.ns.svc.cluster.local").unwrap();
        assert_eq!(h1.headers["host"], "new.ns.svc.cluster.local");
        assert_eq!(h1.uri, "/a?b", "an origin-form target stays origin-form");
        let (mut h2, ()) = http::Request::get("http://old:80/a?b").body(()).unwrap().into_parts();
        set_authority(&mut h2, "new:8080").unwrap();
        assert_eq!(h2.uri, "http://new:8080/a?b");
        assert_eq!(h2.headers["host"], "new:8080");
        assert!(matches!(set_authority(&mut h2, "bad host"), Err(RewriteError::Authority { .. })));
        assert_eq!(h2.uri, "http://new:8080/a?b", "a refused rewrite changes nothing");
    }

    #[test]
    fn bad_regex_rewrites_are_refused() {
        assert!(matches!(regex_rewriter("(", "x"), Err(RewriteError::Regex(_))));
        let error = regex_rewriter("a", "\\k").err().unwrap();
        assert!(error.to_string().contains("not a group reference"), "{error}");
    }
}
