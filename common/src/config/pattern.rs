//! Compiled regular expressions that compare and serialize as the pattern the user wrote.
//!
//! Istio (through Envoy's `safe_regex`) uses RE2 and matches the *whole* value, so a
//! [`Pattern`] is compiled anchored: `^(?:…)$`. The `regex` crate implements RE2's syntax
//! (no backreferences, no lookaround in either). Known gaps: the Perl classes `\d`, `\w`,
//! `\s` and `\b` are Unicode-aware here but ASCII-only in RE2 (so `\d` also matches, say,
//! Arabic-Indic digits here), and RE2's `\C` (any byte) does not compile here.

use std::fmt;

use serde::{Serialize, Serializer};

/// Istio rejects patterns longer than this (Envoy's RE2 program-size limit, approximated).
pub const MAX_PATTERN_LEN: usize = 1024;

/// A regex compiled for full-value matching, kept with its source text.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    anchored: bool,
    compiled: regex::Regex,
}

impl Pattern {
    /// Compiles `source` to match whole values; the error names the problem the way Istio does.
    pub fn new(source: &str) -> Result<Self, String> {
        Self::build(source, true)
    }

    /// Compiles `source` unanchored, to find matches inside a value (`uriRegexRewrite`
    /// substitutes every match, as Envoy's `regex_rewrite` does).
    pub fn for_search(source: &str) -> Result<Self, String> {
        Self::build(source, false)
    }

    fn build(source: &str, anchored: bool) -> Result<Self, String> {
        if source.is_empty() {
            return Err("regex must not be empty".into());
        }
        if source.len() > MAX_PATTERN_LEN {
            return Err(format!("regex is too large ({} bytes); the limit is {MAX_PATTERN_LEN}", source.len()));
        }
        let text = if anchored { format!("^(?:{source})$") } else { source.to_string() };
        let compiled = regex::RegexBuilder::new(&text).size_limit(1 << 20).build().map_err(|e| {
            format!(
                "invalid regex {source:?}: {}; Istio uses RE2 syntax (https://github.com/google/re2/wiki/Syntax)",
                first_line(&e.to_string())
            )
        })?;
        Ok(Self { source: source.to_string(), anchored, compiled })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `value` matches: the whole of it, unless built with [`Pattern::for_search`].
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled.is_match(value)
    }

    /// The compiled regex (anchored unless built with [`Pattern::for_search`]).
    pub fn regex(&self) -> &regex::Regex {
        &self.compiled
    }
}

fn first_line(message: &str) -> String {
    // regex's errors draw a caret diagram over several lines; keep the last line, which
    // says what is wrong ("error: unclosed group").
    message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(message).trim().to_string()
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.anchored == other.anchored
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_values_and_compares_by_source() {
        let p = Pattern::new("/reviews/[0-9]+").unwrap();
        assert!(p.is_match("/reviews/12"));
        assert!(!p.is_match("/reviews/12/x"));
        assert_eq!(p, Pattern::new("/reviews/[0-9]+").unwrap());
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"/reviews/[0-9]+\"");
    }

    #[test]
    fn rejects_bad_patterns() {
        let err = Pattern::new("(unclosed").unwrap_err();
        assert!(err.contains("invalid regex") && err.contains("RE2"), "{err}");
        assert!(!err.contains('\n'));
        assert!(Pattern::new(&"a".repeat(1025)).unwrap_err().contains("too large"));
    }
}
