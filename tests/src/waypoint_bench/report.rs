//! Medians over rounds, the derived figures (added latency, the two target ratios), the table,
//! and the same as JSON.

use std::time::Duration;

use serde::Serialize;

use super::{Options, Path, Protocol, load::Sample, setup::Workers};

/// The targets from the issue: the waypoint at least doubles Envoy's requests/s, and adds at
/// most half of the p50 latency Envoy adds (each Envoy's hop over what it sits on).
const TARGET_RPS_RATIO: f64 = 2.0;
const TARGET_ADDED_P50_RATIO: f64 = 0.5;

/// One path and protocol: medians over the rounds.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub protocol: Protocol,
    pub path: Path,
    /// Answered requests per second, closed loop.
    pub rps: f64,
    /// The share of all CPUs busy during the closed loop (below 1: the path's stages took turns).
    pub machine_busy: f64,
    /// Latency at the fixed rate, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    /// Latency one request at a time (closed loop, one worker), µs.
    pub one_by_one_p50_us: f64,
    pub one_by_one_p99_us: f64,
    /// Latency under saturation, µs (queueing included; for reference).
    pub saturation_p50_us: f64,
    /// What the proxy on the path (waypoint, Envoy) spent per request in the closed loop: CPU µs
    /// and context switches.
    pub proxy_cpu_us_per_request: Option<f64>,
    pub proxy_switches_per_request: Option<f64>,
    /// Requests that failed, over all rounds and modes.
    pub failed: u64,
    /// Every round's figures.
    samples: Vec<Sample>,
}

impl Row {
    pub(super) fn new(protocol: Protocol, path: Path, samples: &[Sample]) -> Self {
        Self {
            protocol,
            path,
            rps: median(samples.iter().map(|s| s.saturation.rps())),
            machine_busy: median(samples.iter().map(|s| s.machine_busy)),
            p50_us: median(samples.iter().map(|s| s.fixed_rate.p50_us)),
            p99_us: median(samples.iter().map(|s| s.fixed_rate.p99_us)),
            one_by_one_p50_us: median(samples.iter().map(|s| s.one_by_one.p50_us)),
            one_by_one_p99_us: median(samples.iter().map(|s| s.one_by_one.p99_us)),
            saturation_p50_us: median(samples.iter().map(|s| s.saturation.p50_us)),
            proxy_cpu_us_per_request: median_of(samples.iter().map(|s| s.proxy.map(|p| p.cpu_us))),
            proxy_switches_per_request: median_of(samples.iter().map(|s| s.proxy.map(|p| p.switches))),
            failed: samples.iter().map(Sample::failed).sum(),
            samples: samples.to_vec(),
        }
    }
}

/// What one protocol's paths say about the targets: the waypoint against each Envoy measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub protocol: Protocol,
    /// waypoint p50 − mesh p50: the waypoint's hop over the L4 mesh it lives in.
    pub waypoint_added_p50_us: f64,
    /// The same one request at a time (no open-loop timer in it).
    pub one_by_one_waypoint_added_p50_us: f64,
    /// Against Envoy as the waypoint (like for like), then against the plain Envoy.
    pub against: Vec<Against>,
}

/// The waypoint against one Envoy.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Against {
    /// `envoy-waypoint` or `envoy`.
    pub baseline: Path,
    /// What that Envoy's hop adds at the fixed rate: the Envoy waypoint's p50 − mesh p50 (its hop
    /// over the same L4 mesh), the plain Envoy's p50 − direct p50.
    pub added_p50_us: f64,
    pub one_by_one_added_p50_us: f64,
    /// waypoint requests/s ÷ that Envoy's (target ≥ 2).
    pub rps_ratio: f64,
    /// waypoint added p50 ÷ Envoy added p50 (target ≤ 0.5); `None` when Envoy added nothing
    /// measurable (the ratio would be meaningless).
    pub added_p50_ratio: Option<f64>,
    pub one_by_one_added_p50_ratio: Option<f64>,
    /// Envoy's CPU per request ÷ the waypoint's: how many times as many requests the waypoint
    /// serves per CPU-second (the proxies themselves, without the rest of their paths).
    pub requests_per_cpu_ratio: Option<f64>,
    pub rps_target_met: bool,
    pub latency_target_met: bool,
}

impl Comparison {
    fn new(protocol: Protocol, rows: &[Row]) -> Option<Self> {
        let row = |path| rows.iter().find(|r| r.protocol == protocol && r.path == path);
        let (mesh, waypoint) = (row(Path::Mesh)?, row(Path::Waypoint)?);
        let waypoint_added = waypoint.p50_us - mesh.p50_us;
        let one_waypoint = waypoint.one_by_one_p50_us - mesh.one_by_one_p50_us;
        let against: Vec<Against> = [(Path::EnvoyWaypoint, Path::Mesh), (Path::Envoy, Path::Direct)]
            .into_iter()
            .filter_map(|(baseline, under)| {
                let (envoy, under) = (row(baseline)?, row(under)?);
                let added = envoy.p50_us - under.p50_us;
                let one_added = envoy.one_by_one_p50_us - under.one_by_one_p50_us;
                let rps_ratio = waypoint.rps / envoy.rps;
                let added_ratio = ratio(waypoint_added, added);
                Some(Against {
                    baseline,
                    added_p50_us: added,
                    one_by_one_added_p50_us: one_added,
                    rps_ratio,
                    added_p50_ratio: added_ratio,
                    one_by_one_added_p50_ratio: ratio(one_waypoint, one_added),
                    requests_per_cpu_ratio: match (envoy.proxy_cpu_us_per_request, waypoint.proxy_cpu_us_per_request) {
                        (Some(envoy), Some(waypoint)) => ratio(envoy, waypoint),
                        _ => None,
                    },
                    rps_target_met: rps_ratio >= TARGET_RPS_RATIO,
                    latency_target_met: added_ratio.is_some_and(|r| r <= TARGET_ADDED_P50_RATIO),
                })
            })
            .collect();
        (!against.is_empty()).then_some(Self {
            protocol,
            waypoint_added_p50_us: waypoint_added,
            one_by_one_waypoint_added_p50_us: one_waypoint,
            against,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seconds: u64,
    pub rounds: usize,
    pub concurrency: u32,
    pub rate: u32,
    pub workers: Workers,
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
    pub total_seconds: f64,
}

impl Report {
    pub(super) fn new(options: &Options, workers: Workers, rows: Vec<Row>, elapsed: Duration) -> Self {
        let comparisons = Protocol::ALL.iter().filter_map(|p| Comparison::new(*p, &rows)).collect();
        Self {
            seconds: options.seconds,
            rounds: options.rounds,
            concurrency: options.concurrency,
            rate: options.rate,
            workers,
            rows,
            comparisons,
            total_seconds: elapsed.as_secs_f64(),
        }
    }

    pub fn print(&self) {
        println!();
        println!(
            "{:<9} {:<17} {:>8} {:>5} {:>21} {:>21} {:>22} {:>6}",
            "protocol",
            "path",
            "req/s",
            "CPUs",
            format!("p50 / p99 @{}/s", self.rate),
            "p50 / p99 one by one",
            "proxy CPU, switches/req",
            "failed"
        );
        for protocol in Protocol::ALL {
            for row in self.rows.iter().filter(|r| r.protocol == protocol) {
                println!(
                    "{:<9} {:<17} {:>8.0} {:>4.0}% {:>9.0} / {:>6.0} µs {:>9.0} / {:>6.0} µs {:>22} {:>6}",
                    protocol.label(),
                    row.path.label(),
                    row.rps,
                    row.machine_busy * 100.0,
                    row.p50_us,
                    row.p99_us,
                    row.one_by_one_p50_us,
                    row.one_by_one_p99_us,
                    match (row.proxy_cpu_us_per_request, row.proxy_switches_per_request) {
                        (Some(cpu), Some(switches)) => format!("{cpu:.1} µs, {switches:.2}"),
                        _ => "-".to_owned(),
                    },
                    row.failed
                );
            }
        }
        println!();
        let show =
            |r: Option<f64>| r.map_or_else(|| "n/a (Envoy added nothing measurable)".to_owned(), |r| format!("{r:.2}"));
        for c in &self.comparisons {
            let label = c.protocol.label();
            for a in &c.against {
                let (name, over) = match a.baseline {
                    Path::EnvoyWaypoint => ("the Envoy waypoint", "over the L4 mesh"),
                    _ => ("plain Envoy", "over direct"),
                };
                println!(
                    "{label} vs {name}: requests/s waypoint ÷ Envoy = {:.2} (target ≥ {TARGET_RPS_RATIO}: {})",
                    a.rps_ratio,
                    met(a.rps_target_met)
                );
                println!(
                    "{label} vs {name}: added p50 @{}/s: waypoint {:+.0} µs over the L4 mesh, Envoy {:+.0} µs {over}; \
                     ratio {} (target ≤ {TARGET_ADDED_P50_RATIO}: {})",
                    self.rate,
                    c.waypoint_added_p50_us,
                    a.added_p50_us,
                    show(a.added_p50_ratio),
                    met(a.latency_target_met)
                );
                println!(
                    "{label} vs {name}: added p50 one by one: waypoint {:+.0} µs, Envoy {:+.0} µs; ratio {}",
                    c.one_by_one_waypoint_added_p50_us,
                    a.one_by_one_added_p50_us,
                    show(a.one_by_one_added_p50_ratio)
                );
                if let Some(r) = a.requests_per_cpu_ratio {
                    println!(
                        "{label} vs {name}: requests per CPU-second, waypoint ÷ Envoy (the proxies alone) = {r:.2}"
                    );
                }
            }
        }
        println!(
            "\n(req/s: closed loop, {} workers, {} s, CPUs: the share of all CPUs busy meanwhile; latency @{}/s: open loop for {} s, from each request's \
             scheduled time; one by one: one worker for {} s; medians of {} rounds; worker threads: waypoint {}, \
             Envoy {})",
            self.concurrency,
            self.seconds,
            self.rate,
            self.seconds,
            self.seconds,
            self.rounds,
            self.workers.waypoint,
            self.workers.envoy
        );
        println!("total time: {:.0} s", self.total_seconds);
    }
}

/// `added ÷ baseline`, when the baseline added anything (else the ratio means nothing).
fn ratio(added: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| added / baseline)
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}

/// The median of the values present, if any is.
fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| median(present.into_iter()))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::{
        super::{cpu::PerRequest, load::Run},
        *,
    };

    fn sample(rps: f64, p50: f64, proxy_cpu_us: Option<f64>) -> Sample {
        Sample {
            proxy: proxy_cpu_us.map(|cpu_us| PerRequest { cpu_us, switches: 2.0 }),
            machine_busy: 0.5,
            saturation: Run { ok: (rps * 5.0) as u64, failed: 0, elapsed_ms: 5000, p50_us: 1000.0, p99_us: 2000.0 },
            fixed_rate: Run { ok: 5000, failed: 1, elapsed_ms: 5000, p50_us: p50, p99_us: p50 * 3.0 },
            one_by_one: Run { ok: 5000, failed: 0, elapsed_ms: 5000, p50_us: p50 / 2.0, p99_us: p50 },
        }
    }

    fn row(path: Path, rps: f64, p50: f64) -> Row {
        let cpu = match path {
            Path::Waypoint => Some(20.0),
            Path::Envoy => Some(50.0),
            Path::EnvoyWaypoint => Some(80.0),
            Path::Direct | Path::Mesh => None,
        };
        let samples = [
            sample(rps, p50, cpu),
            sample(rps * 2.0, p50 + 50.0, cpu.map(|c| c * 3.0)),
            sample(rps / 2.0, p50 + 1.0, cpu.map(|c| c + 1.0)),
        ];
        Row::new(Protocol::Http1, path, &samples)
    }

    #[test]
    fn rows_take_medians_and_comparisons_subtract_the_right_baselines() {
        let rows = vec![
            row(Path::Direct, 10_000.0, 100.0),
            row(Path::Mesh, 5_000.0, 200.0),
            row(Path::Waypoint, 4_000.0, 260.0),
            row(Path::Envoy, 2_000.0, 220.0),
            row(Path::EnvoyWaypoint, 1_000.0, 400.0),
        ];
        assert_eq!(rows[0].rps, 10_000.0, "median of 5 000, 10 000, 20 000");
        assert_eq!(rows[0].p50_us, 101.0, "median of 100, 150, 101");
        assert_eq!(rows[0].failed, 3);
        let c = Comparison::new(Protocol::Http1, &rows).unwrap();
        assert_eq!(c.waypoint_added_p50_us, 60.0, "waypoint − mesh");
        assert_eq!(c.one_by_one_waypoint_added_p50_us, 30.0);
        let baselines: Vec<Path> = c.against.iter().map(|a| a.baseline).collect();
        assert_eq!(baselines, [Path::EnvoyWaypoint, Path::Envoy], "like for like first");

        let envoy_waypoint = &c.against[0];
        assert_eq!(envoy_waypoint.added_p50_us, 200.0, "envoy waypoint − mesh");
        assert_eq!(envoy_waypoint.rps_ratio, 4.0);
        assert_eq!(envoy_waypoint.added_p50_ratio, Some(0.3));
        assert!(envoy_waypoint.rps_target_met && envoy_waypoint.latency_target_met);
        assert_eq!(envoy_waypoint.requests_per_cpu_ratio, Some(81.0 / 21.0));

        let envoy = &c.against[1];
        assert_eq!(envoy.added_p50_us, 120.0, "envoy − direct");
        assert_eq!(envoy.rps_ratio, 2.0);
        assert_eq!(envoy.added_p50_ratio, Some(0.5));
        assert!(envoy.rps_target_met && envoy.latency_target_met);
        assert_eq!(envoy.one_by_one_added_p50_us, 60.0);
        assert_eq!(envoy.one_by_one_added_p50_ratio, Some(0.5));
        assert_eq!((rows[0].proxy_cpu_us_per_request, rows[2].proxy_cpu_us_per_request), (None, Some(21.0)));
        assert_eq!(envoy.requests_per_cpu_ratio, Some(51.0 / 21.0), "Envoy's CPU per request ÷ the waypoint's");
        assert!(Comparison::new(Protocol::H2c, &rows).is_none(), "no h2c rows");

        let without_envoy_waypoint = Comparison::new(Protocol::Http1, &rows[..4]).unwrap();
        assert_eq!(without_envoy_waypoint.against.len(), 1, "a baseline not measured is left out");
        assert!(Comparison::new(Protocol::Http1, &rows[..3]).is_none(), "no Envoy measured: nothing to compare");
    }

    #[test]
    fn a_baseline_envoy_did_not_exceed_gives_no_ratio() {
        let rows = vec![
            row(Path::Direct, 10_000.0, 300.0),
            row(Path::Mesh, 5_000.0, 200.0),
            row(Path::Waypoint, 4_000.0, 260.0),
            row(Path::Envoy, 2_000.0, 220.0),
        ];
        let c = Comparison::new(Protocol::Http1, &rows).unwrap();
        assert_eq!(c.against[0].added_p50_ratio, None);
        assert!(!c.against[0].latency_target_met);
    }
}
