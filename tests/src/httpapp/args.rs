//! Command-line parsing for `ambit-httpapp`: `serve` and `load` options, validated once into
//! [`ServeArgs`] and [`LoadArgs`] (hand-rolled like `ambit-testapp`'s: no clap for a test tool).

use std::{fmt::Display, net::SocketAddr, str::FromStr, time::Duration};

use http::{
    HeaderName, HeaderValue, Method, Uri,
    uri::{Authority, PathAndQuery},
};

pub const USAGE: &str = "\
usage:
  ambit-httpapp serve --listen <ip:port> --name <text> [--protocol http|grpc]
  ambit-httpapp load --url http://<host:port><path> --count N [--concurrency C]
                     [--protocol http1|h2c|grpc] [--header 'name: value']... [--authority <host[:port]>]
                     [--method GET] [--body-bytes N] [--timeout-ms T] [--deadline-ms D] [--rate R]
                     [--grpc-fail-with CODE] [--grpc-delay-ms MS] [--each]
  ambit-httpapp upgrade --url http://<host:port><path> [--authority <host[:port]>] [--bytes N]
                        [--timeout-ms T]
`{i}` in a --header value is replaced by the request's index (a unique x-httpapp-key per request).
Server control headers: x-httpapp-status, x-httpapp-delay-ms, x-httpapp-fail-first + x-httpapp-key,
x-httpapp-fail-on (server names that answer 503), x-httpapp-reply: brief (only servedBy, no echo). `serve` answers `Upgrade: websocket` with 101
and then writes its name and a newline and echoes every byte; `upgrade` sends N bytes after the 101.
Output: one JSON event per line on stdout.";

const SERVE_FLAGS: &[&str] = &["listen", "name", "protocol"];
const LOAD_FLAGS: &[&str] = &[
    "url",
    "count",
    "concurrency",
    "protocol",
    "header",
    "authority",
    "method",
    "body-bytes",
    "timeout-ms",
    "deadline-ms",
    "rate",
    "grpc-fail-with",
    "grpc-delay-ms",
];
const LOAD_SWITCHES: &[&str] = &["each"];
const UPGRADE_FLAGS: &[&str] = &["url", "authority", "bytes", "timeout-ms"];
/// Flags that may be given more than once.
const REPEATABLE: &[&str] = &["header"];

/// What `serve` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServeProtocol {
    /// HTTP/1.1 and h2c (prior knowledge) on one port.
    Http,
    /// The unary `ambit.test.Echo/Call` over h2c.
    Grpc,
}

impl ServeProtocol {
    pub(super) fn name(self) -> &'static str {
        match self {
            ServeProtocol::Http => "http",
            ServeProtocol::Grpc => "grpc",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ServeArgs {
    pub(super) listen: SocketAddr,
    pub(super) name: String,
    pub(super) protocol: ServeProtocol,
}

/// How `load` talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LoadProtocol {
    /// One keep-alive HTTP/1.1 connection per worker.
    Http1,
    /// One HTTP/2 connection (prior knowledge) multiplexed by all workers.
    H2c,
    /// The unary `ambit.test.Echo/Call` through a tonic channel.
    Grpc,
}

impl LoadProtocol {
    pub(super) fn name(self) -> &'static str {
        match self {
            LoadProtocol::Http1 => "http1",
            LoadProtocol::H2c => "h2c",
            LoadProtocol::Grpc => "grpc",
        }
    }
}

/// A `--header` whose value may contain `{i}`, replaced by the request's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HeaderTemplate {
    pub(super) name: HeaderName,
    value: String,
}

impl HeaderTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        let (name, value) = text.split_once(':').ok_or_else(|| format!("--header {text:?}: expected 'name: value'"))?;
        let name = HeaderName::from_str(name.trim()).map_err(|e| format!("--header {text:?}: bad name: {e}"))?;
        let template = Self { name, value: value.trim().to_owned() };
        // Indexes are digits, so a value valid for request 0 is valid for every request.
        HeaderValue::from_str(&template.text_for(0)).map_err(|e| format!("--header {text:?}: bad value: {e}"))?;
        Ok(template)
    }

    /// The value for request `i`, as text.
    pub(super) fn text_for(&self, i: u64) -> String {
        self.value.replace("{i}", &i.to_string())
    }

    /// The value for request `i`.
    pub(super) fn value_for(&self, i: u64) -> HeaderValue {
        HeaderValue::from_str(&self.text_for(i)).expect("checked by HeaderTemplate::parse: only digits are substituted")
    }
}

/// Where `load` sends its requests: `--url`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// `host:port` to connect to.
    pub(super) connect: String,
    /// The URL's authority (`--authority` overrides what is sent, not where we connect).
    pub(super) authority: Authority,
    pub(super) path: PathAndQuery,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!("--url {url:?}: scheme {other} is not supported (plaintext http:// only)"));
            }
            None => return Err(format!("--url {url:?}: expected http://<host:port><path>")),
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?}: no host"))?.clone();
        let connect = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let path = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self { connect, authority, path })
    }
}

#[derive(Clone, Debug)]
pub(super) struct LoadArgs {
    pub(super) target: Target,
    pub(super) count: u64,
    pub(super) concurrency: u64,
    pub(super) protocol: LoadProtocol,
    pub(super) headers: Vec<HeaderTemplate>,
    /// What is sent as Host / `:authority`.
    pub(super) authority: Authority,
    pub(super) method: Method,
    pub(super) body_bytes: usize,
    pub(super) timeout: Duration,
    pub(super) deadline: Duration,
    /// Requests per second (open loop), or as fast as the workers go.
    pub(super) rate: Option<f64>,
    pub(super) grpc_fail_with: i32,
    pub(super) grpc_delay_ms: u32,
    /// Emit a `response` event per request.
    pub(super) each: bool,
}

/// `upgrade`: one WebSocket-style upgrade and an echo of `bytes` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UpgradeArgs {
    pub(super) target: Target,
    /// What is sent as Host.
    pub(super) authority: Authority,
    pub(super) bytes: usize,
    pub(super) timeout: Duration,
}

pub(super) fn parse_upgrade(args: &[String]) -> Result<UpgradeArgs, String> {
    let flags = Flags::parse(args, UPGRADE_FLAGS, &[])?;
    let target = Target::parse(flags.required("url")?)?;
    let authority = match flags.one("authority") {
        None => target.authority.clone(),
        Some(a) => a.parse().map_err(|e| format!("--authority {a:?}: {e} (expected host[:port])"))?,
    };
    let default_timeout = super::upgrade::DEFAULT_TIMEOUT.as_millis() as u64;
    Ok(UpgradeArgs {
        target,
        authority,
        bytes: flags.number("bytes", 1024)?,
        timeout: Duration::from_millis(positive(&flags, "timeout-ms", Some(default_timeout))?),
    })
}

pub(super) fn parse_serve(args: &[String]) -> Result<ServeArgs, String> {
    let flags = Flags::parse(args, SERVE_FLAGS, &[])?;
    let listen = flags.required("listen")?;
    let listen = listen.parse().map_err(|e| format!("--listen {listen:?}: {e} (expected ip:port)"))?;
    let protocol = match flags.one("protocol") {
        None | Some("http") => ServeProtocol::Http,
        Some("grpc") => ServeProtocol::Grpc,
        Some(other) => return Err(format!("--protocol {other:?}: expected http or grpc")),
    };
    Ok(ServeArgs { listen, name: flags.required("name")?.to_owned(), protocol })
}

pub(super) fn parse_load(args: &[String]) -> Result<LoadArgs, String> {
    let flags = Flags::parse(args, LOAD_FLAGS, LOAD_SWITCHES)?;
    let target = Target::parse(flags.required("url")?)?;
    let protocol = match flags.one("protocol") {
        None | Some("http1") => LoadProtocol::Http1,
        Some("h2c") => LoadProtocol::H2c,
        Some("grpc") => LoadProtocol::Grpc,
        Some(other) => return Err(format!("--protocol {other:?}: expected http1, h2c or grpc")),
    };
    let grpc_only = ["grpc-fail-with", "grpc-delay-ms"];
    let http_only = ["method"];
    let misplaced = if protocol == LoadProtocol::Grpc { &http_only[..] } else { &grpc_only[..] };
    if let Some(flag) = misplaced.iter().find(|f| flags.has(f)) {
        return Err(format!("--{flag} does not apply to --protocol {}", protocol.name()));
    }
    let headers: Vec<HeaderTemplate> =
        flags.all("header").into_iter().map(HeaderTemplate::parse).collect::<Result<_, _>>()?;
    if protocol == LoadProtocol::Grpc
        && let Some(binary) = headers.iter().find(|h| h.name.as_str().ends_with("-bin"))
    {
        return Err(format!("--header {}: binary (-bin) gRPC metadata is not supported", binary.name));
    }
    let authority = match flags.one("authority") {
        None => target.authority.clone(),
        Some(a) => a.parse().map_err(|e| format!("--authority {a:?}: {e} (expected host[:port])"))?,
    };
    let method = match flags.one("method") {
        None => Method::GET,
        Some(m) => Method::from_str(m).map_err(|e| format!("--method {m:?}: {e}"))?,
    };
    let rate = match flags.one("rate") {
        None => None,
        Some(r) => match r.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Some(r),
            _ => return Err(format!("--rate {r:?}: expected a positive number of requests per second")),
        },
    };
    Ok(LoadArgs {
        target,
        count: positive(&flags, "count", None)?,
        concurrency: positive(&flags, "concurrency", Some(1))?,
        protocol,
        headers,
        authority,
        method,
        body_bytes: flags.number("body-bytes", 0)?,
        timeout: Duration::from_millis(positive(&flags, "timeout-ms", Some(30_000))?),
        deadline: Duration::from_millis(positive(&flags, "deadline-ms", Some(120_000))?),
        rate,
        grpc_fail_with: flags.number("grpc-fail-with", 0)?,
        grpc_delay_ms: flags.number("grpc-delay-ms", 0)?,
        each: flags.has("each"),
    })
}

/// A number above zero; required when `default` is `None`.
fn positive(flags: &Flags, name: &str, default: Option<u64>) -> Result<u64, String> {
    let value = match (flags.one(name), default) {
        (None, Some(default)) => default,
        (None, None) => return Err(format!("--{name} is required")),
        (Some(_), _) => flags.number(name, 0)?,
    };
    if value == 0 {
        return Err(format!("--{name} must be at least 1"));
    }
    Ok(value)
}

/// The `--flag value` pairs (and value-less switches) of one subcommand, in order.
struct Flags {
    values: Vec<(String, String)>,
}

impl Flags {
    fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<Self, String> {
        let mut values: Vec<(String, String)> = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg.strip_prefix("--").ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let value = if switches.contains(&name) {
                String::new()
            } else if with_value.contains(&name) {
                iter.next().ok_or_else(|| format!("--{name} needs a value"))?.clone()
            } else {
                return Err(format!("unknown flag --{name}"));
            };
            if !REPEATABLE.contains(&name) && values.iter().any(|(n, _)| n == name) {
                return Err(format!("--{name} given twice"));
            }
            values.push((name.to_owned(), value));
        }
        Ok(Self { values })
    }

    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| n == name)
    }

    /// The value of a flag given at most once (`parse` refuses repeats).
    fn one(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.one(name).ok_or_else(|| format!("--{name} is required"))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: Display,
    {
        match self.one(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
