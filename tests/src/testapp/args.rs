//! Command-line parsing for `ambit-testapp` (hand-rolled: the app must stay dependency-free).

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use super::stream::DEFAULT_SEED;

pub const USAGE: &str = "\
usage:
  ambit-testapp serve --listen <ip:port> [--mode echo|digest] [--reply-bytes M] [--seed S]
  ambit-testapp connect --to <ip:port> [--mode echo|digest] [--send N] [--reply-bytes M]
                        [--timeout-ms T] [--seed S] [--ipv6-mapped]
                        [--pause-after N --resume-file PATH] [--rate BYTES_PER_SEC]
  ambit-testapp connect-many --to <ip:port> --count N [--interval-ms T] [--timeout-ms T]
                             [--ipv6-mapped]
Output: one JSON event per line on stdout.";

const FLAGS_WITHOUT_VALUE: &[&str] = &["ipv6-mapped"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Echo,
    Digest,
}

impl Mode {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Digest => "digest",
        }
    }
}

/// Parsed `--flag value` pairs of one subcommand.
pub(super) struct Flags {
    values: BTreeMap<String, String>,
}

impl Flags {
    /// Parses `args` (after the subcommand), accepting only the flags in `allowed`.
    pub(super) fn parse(args: &[String], allowed: &[&str]) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg.strip_prefix("--").ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            if !allowed.contains(&name) {
                return Err(format!("unknown flag --{name}"));
            }
            let value = if FLAGS_WITHOUT_VALUE.contains(&name) {
                "true".to_owned()
            } else {
                iter.next().ok_or_else(|| format!("--{name} needs a value"))?.clone()
            };
            values.insert(name.to_owned(), value);
        }
        Ok(Self { values })
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub(super) fn addr(&self, name: &str) -> Result<SocketAddr, String> {
        let v = self.values.get(name).ok_or_else(|| format!("--{name} is required"))?;
        v.parse().map_err(|e| format!("--{name} {v:?}: {e} (expected ip:port)"))
    }

    pub(super) fn path(&self, name: &str) -> Option<PathBuf> {
        self.values.get(name).map(PathBuf::from)
    }

    pub(super) fn u64_or(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
        }
    }

    pub(super) fn seed(&self) -> Result<u64, String> {
        self.u64_or("seed", DEFAULT_SEED)
    }

    pub(super) fn timeout(&self) -> Result<Duration, String> {
        let ms = self.u64_or("timeout-ms", 30_000)?;
        if ms == 0 {
            return Err("--timeout-ms must be positive".into());
        }
        Ok(Duration::from_millis(ms))
    }

    pub(super) fn mode(&self) -> Result<Mode, String> {
        match self.values.get("mode").map(String::as_str) {
            None | Some("echo") => Ok(Mode::Echo),
            Some("digest") => Ok(Mode::Digest),
            Some(other) => Err(format!("--mode {other:?}: expected echo or digest")),
        }
    }
}
