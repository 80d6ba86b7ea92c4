//! Access lines formatted straight into the batch buffer, for the data path's one line per
//! request: the same text (or JSON) a `tracing` event on the `access` target gives, without the
//! event machinery (field visitors, `Debug` formatting through `dyn Write`, a line assembled
//! in one buffer then copied to another), which was the largest single cost in the waypoint's
//! profile after TLS. The `--log` filter still decides: [`enabled`] asks `tracing` (once, when
//! [`super::init`] has installed the filter, which does not change afterwards).

use std::{
    cell::RefCell,
    fmt::Write as _,
    sync::OnceLock,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{ACCESS_TARGET, LogFormat, STDERR};

/// A field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Text without spaces or control characters (an address, a method, a path, flags),
    /// written as is in text lines, as `tracing` writes a `%` field.
    Bare(&'a str),
    /// Any text: quoted and escaped in text lines, as `tracing` writes a `&str` field.
    Quoted(&'a str),
    Number(u64),
}

/// The answer of [`enabled`] under the filter [`super::init`] installed. Asking `tracing` on
/// every request costs an `EnvFilter` evaluation each time (the callsite's interest is
/// "sometimes"), a measurable share of the waypoint's work per request.
pub(super) static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether the `--log` filter lets access lines through (`access=info`).
pub fn enabled() -> bool {
    match ENABLED.get() {
        Some(enabled) => *enabled,
        None => tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO),
    }
}

/// Appends one access line, `message` then `fields`, to the batch (see the module above). Call
/// it only when [`enabled`].
pub fn write(message: &str, fields: &[(&str, Value<'_>)]) {
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        format_line(line, super::format(), SystemTime::now(), message, fields);
        STDERR.append(line.as_bytes(), || std::io::stderr().lock());
    });
}

fn format_line(out: &mut String, format: LogFormat, now: SystemTime, message: &str, fields: &[(&str, Value<'_>)]) {
    match format {
        LogFormat::Text => {
            timestamp(out, now);
            out.push_str("  INFO ");
            out.push_str(ACCESS_TARGET);
            out.push_str(": ");
            out.push_str(message);
            for (name, value) in fields {
                out.push(' ');
                out.push_str(name);
                out.push('=');
                match value {
                    Value::Bare(text) => out.push_str(text),
                    Value::Quoted(text) => quoted(out, text, Escape::Rust),
                    Value::Number(n) => {
                        let _ = write!(out, "{n}");
                    }
                }
            }
        }
        LogFormat::Json => {
            out.push_str("{\"timestamp\":\"");
            timestamp(out, now);
            out.push_str("\",\"level\":\"INFO\",\"message\":");
            quoted(out, message, Escape::Json);
            for (name, value) in fields {
                out.push(',');
                quoted(out, name, Escape::Json);
                out.push(':');
                match value {
                    Value::Bare(text) | Value::Quoted(text) => quoted(out, text, Escape::Json),
                    Value::Number(n) => {
                        let _ = write!(out, "{n}");
                    }
                }
            }
            out.push_str(",\"target\":\"");
            out.push_str(ACCESS_TARGET);
            out.push_str("\"}");
        }
    }
    out.push('\n');
}

#[derive(Clone, Copy)]
enum Escape {
    /// As Rust's `Debug` for `str` (what `tracing`'s text lines show).
    Rust,
    Json,
}

fn quoted(out: &mut String, text: &str, escape: Escape) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = match escape {
                    Escape::Rust => write!(out, "\\u{{{:x}}}", c as u32),
                    Escape::Json => write!(out, "\\u{:04x}", c as u32),
                };
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-12-06T02:59:01.123456Z` (UTC, microseconds), as `tracing`'s default timer writes it.
fn timestamp(out: &mut String, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let of_day = seconds % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since_epoch.subsec_micros()
    );
}

/// The proleptic Gregorian date `days` after 1970-01-01, by counting 400-year eras (146 097
/// days each) from 0000-03-01, so that the leap day falls at the end of each counted year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Days since 0000-03-01.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March … 11 = February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros)
    }

    #[test]
    fn dates_across_leap_years_and_centuries() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29), "2000 is a leap year");
        assert_eq!(civil_date(11_017), (2000, 3, 1));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_793), (2026, 12, 6));
        assert_eq!(civil_date(47_541), (2100, 3, 1), "2100 is not: Feb 28 is followed by Mar 1");
        assert_eq!(civil_date(47_540), (2100, 2, 28));
    }

    #[test]
    fn text_lines_read_like_the_tracing_event_they_replace() {
        let mut line = String::new();
        let fields = [
            ("id", Value::Number(7)),
            ("source", Value::Bare("10.1.0.5:40000")),
            ("identity", Value::Quoted("spiffe://cluster.local/ns/a/sa/b")),
            ("detail", Value::Quoted("said \"no\"\n")),
        ];
        format_line(&mut line, LogFormat::Text, at(1_796_525_941, 123_456), "request", &fields);
        assert_eq!(
            line,
            "2026-12-06T02:59:01.123456Z  INFO access: request id=7 source=10.1.0.5:40000 \
             identity=\"spiffe://cluster.local/ns/a/sa/b\" detail=\"said \\\"no\\\"\\n\"\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_the_fields_flattened() {
        let mut line = String::new();
        let fields = [("id", Value::Number(7)), ("path", Value::Bare("/a")), ("detail", Value::Quoted("x\u{1}y"))];
        format_line(&mut line, LogFormat::Json, at(0, 5), "request", &fields);
        assert!(line.ends_with('\n'));
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "timestamp": "1970-01-01T00:00:00.000005Z", "level": "INFO", "message": "request",
                "id": 7, "path": "/a", "detail": "x\u{1}y", "target": "access",
            })
        );
    }
}
