//! Go-style durations as Istio writes them: `10s`, `0.5s`, `250ms`, `1m`, `1h30m`.
//!
//! Istio's API reference documents the format as "1h/1m/1s/1ms"; its CRDs accept Go's
//! `time.ParseDuration` syntax. One deliberate difference: Go accepts a bare `0`; Ambit asks
//! for a unit everywhere, because a bare number is far more often a mistake (`timeout: 10`).

use std::fmt;

use serde::{Serialize, Serializer};

/// A non-negative duration parsed from Go syntax. Serializes back to Go syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub fn from_std(d: std::time::Duration) -> Self {
        Self(d)
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// Parses `text`; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("duration is empty; write e.g. 10s".into());
        }
        if s.starts_with('-') {
            return Err(format!("duration {text:?} is negative"));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s.parse::<f64>().is_ok() {
            return Err(format!("duration {text:?} has no unit; write e.g. {s}s"));
        }
        let mut rest = s;
        let mut nanos: u128 = 0;
        while !rest.is_empty() {
            let (value, unit, tail) = split_term(rest).map_err(|why| format!("duration {text:?} {why}"))?;
            let per_unit = unit_nanos(unit)
                .ok_or_else(|| format!("duration {text:?} has unknown unit {unit:?}; use h, m, s, ms, us or ns"))?;
            nanos = nanos
                .checked_add(term_nanos(value, per_unit).ok_or_else(|| format!("duration {text:?} is too large"))?)
                .ok_or_else(|| format!("duration {text:?} is too large"))?;
            rest = tail;
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| format!("duration {text:?} is too large"))?;
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        Ok(Self(std::time::Duration::new(secs, sub)))
    }
}

/// Splits `1.5h30m` into (`1.5`, `h`, `30m`).
fn split_term(s: &str) -> Result<(&str, &str, &str), String> {
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let number = &s[..number_end];
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err("is not a duration; write e.g. 10s, 250ms or 1h30m".into());
    }
    let after = &s[number_end..];
    let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
    if unit_end == 0 {
        return Err(format!("has no unit after {number}; write e.g. {number}s"));
    }
    Ok((number, &after[..unit_end], &after[unit_end..]))
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `value` (digits with at most one `.`) times `per_unit`, in nanoseconds, exactly.
fn term_nanos(value: &str, per_unit: u128) -> Option<u128> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut total = whole.checked_mul(per_unit)?;
    // Digits past nanosecond precision cannot matter; keep the arithmetic small.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        total = total.checked_add(digits.checked_mul(per_unit)? / scale)?;
    }
    Some(total)
}

impl fmt::Display for Duration {
    /// Go-like canonical form: `1h30m`, `10s`, `1.5s`, `250ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        if total < 1_000_000_000 {
            return if total.is_multiple_of(1_000_000) {
                write!(f, "{}ms", total / 1_000_000)
            } else if total.is_multiple_of(1_000) {
                write!(f, "{}us", total / 1_000)
            } else {
                write!(f, "{total}ns")
            };
        }
        let secs = self.0.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        let nanos = self.0.subsec_nanos();
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        } else if s > 0 || (h == 0 && m == 0) {
            write!(f, "{s}s")
        } else {
            Ok(())
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        Duration::parse(text).unwrap().as_std().as_millis()
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("0.5s"), 500);
        assert_eq!(ms("1m"), 60_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("1.5h"), 5_400_000);
        assert_eq!(ms("0s"), 0);
        assert_eq!(Duration::parse("2us").unwrap().as_std().as_nanos(), 2_000);
    }

    #[test]
    fn rejects_bad_durations_with_a_fix() {
        assert_eq!(Duration::parse("10").unwrap_err(), "duration \"10\" has no unit; write e.g. 10s");
        assert!(Duration::parse("10x").unwrap_err().contains("unknown unit"));
        assert!(Duration::parse("-1s").unwrap_err().contains("negative"));
        assert!(Duration::parse("1h30").unwrap_err().contains("no unit after 30"));
        assert!(Duration::parse("s").unwrap_err().contains("not a duration"));
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("99999999999999999999999h").unwrap_err().contains("too large"));
    }

    #[test]
    fn displays_canonically() {
        for (input, shown) in
            [("10s", "10s"), ("0.5s", "500ms"), ("1h30m", "1h30m"), ("90s", "1m30s"), ("1.25s", "1.25s"), ("0s", "0s")]
        {
            assert_eq!(Duration::parse(input).unwrap().to_string(), shown);
        }
    }
}
