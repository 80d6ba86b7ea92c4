//! Logging for Ambit's binaries: one `--log` filter (`tracing` directives) and one
//! `--log-format`, the same in every binary, to stderr.

use serde::Serialize;

/// `--log-format`: lines for people, or one JSON object per event for collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: events matching `filter` (e.g. `info,access=info`) go to
/// stderr in `format`.
pub fn init(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
