//! One `ambit-httpapp load` run and what its summary says.

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Options, Protocol, cpu::PerRequest, slack};
use crate::Pod;

/// Runs where more than this share of requests failed are refused: their figures would describe
/// errors, not the path.
const MAX_FAILED_SHARE: f64 = 0.01;

/// Closed loop (as fast as the workers go) or open loop at a fixed rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// As fast as the workers go until `--seconds` are up.
    Saturation,
    /// `--rate` requests per second for `--seconds`.
    FixedRate,
    /// One worker, each request sent when the previous one is answered, for `--seconds`: latency
    /// without load and without the open loop's timer (see `Sample::one_by_one`).
    OneByOne,
    /// This many requests as fast as the workers go (warm-up), bounded like a fixed-rate run.
    Count(u64),
}

/// Where a path's client sends its requests.
pub(super) struct Target<'a> {
    pub(super) client: &'a Pod,
    /// `http://host:port/path`, where the client connects.
    pub(super) url: String,
    /// What is sent as Host / `:authority`.
    pub(super) authority: String,
}

/// A load run's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Run {
    /// Requests answered 200.
    pub(super) ok: u64,
    /// Requests sent that got anything else or no answer.
    pub(super) failed: u64,
    pub(super) elapsed_ms: u64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
}

impl Run {
    /// Answered requests per second.
    pub(super) fn rps(&self) -> f64 {
        if self.elapsed_ms == 0 { 0.0 } else { self.ok as f64 * 1000.0 / self.elapsed_ms as f64 }
    }

    /// Reads `ambit-httpapp load`'s `summary` event.
    pub(super) fn from_summary(summary: &Value) -> anyhow::Result<Self> {
        let number = |v: &Value, what: &str| v.as_f64().with_context(|| format!("summary has no {what}: {summary}"));
        let sent = number(&summary["sent"], "sent")? as u64;
        let ok = summary["statuses"]["200"].as_u64().unwrap_or(0);
        if ok == 0 {
            bail!("no request was answered 200: {summary}");
        }
        Ok(Self {
            ok,
            failed: sent.saturating_sub(ok),
            elapsed_ms: number(&summary["elapsedMs"], "elapsedMs")? as u64,
            p50_us: number(&summary["latencyUs"]["p50"], "latencyUs.p50")?,
            p99_us: number(&summary["latencyUs"]["p99"], "latencyUs.p99")?,
        })
    }
}

/// One measurement of a path: requests/s at saturation, latency at the fixed rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Sample {
    pub(super) saturation: Run,
    pub(super) fixed_rate: Run,
    /// Closed loop with one worker. `ambit-httpapp load --rate` counts latency from each
    /// request's scheduled time, and its tokio timer wakes the worker up to about a millisecond
    /// after that time: every fixed-rate figure carries that delay (the same for every path, so
    /// it cancels in the differences, but it adds noise to them). This run has no timer in it.
    pub(super) one_by_one: Run,
    /// What the proxy on the path (the waypoint, Envoy) spent per request in the closed loop.
    pub(super) proxy: Option<PerRequest>,
    /// The share of all CPUs' time that was busy during the closed loop.
    pub(super) machine_busy: f64,
}

impl Sample {
    pub(super) fn failed(&self) -> u64 {
        self.saturation.failed + self.fixed_rate.failed + self.one_by_one.failed
    }

    pub(super) fn ok(&self) -> u64 {
        self.saturation.ok + self.fixed_rate.ok + self.one_by_one.ok
    }

    pub(super) fn line(&self) -> String {
        format!(
            "{:>6.0} req/s ({:>3.0}% CPU)   fixed rate p50 {:>5.0} µs p99 {:>6.0} µs   one by one p50 {:>5.0} µs p99 {:>6.0} µs{}{}",
            self.saturation.rps(),
            self.machine_busy * 100.0,
            self.fixed_rate.p50_us,
            self.fixed_rate.p99_us,
            self.one_by_one.p50_us,
            self.one_by_one.p99_us,
            match self.proxy {
                Some(p) => format!("   proxy {:.1} µs CPU, {:.2} switches /req", p.cpu_us, p.switches),
                None => String::new(),
            },
            match self.failed() {
                0 => String::new(),
                n => format!("   ({n} failed)"),
            }
        )
    }
}

/// The `ambit-httpapp load` arguments of one run. Both modes are bounded in count and time.
pub(super) fn args(
    url: &str,
    authority: &str,
    protocol: Protocol,
    mode: Mode,
    options: &Options,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "load",
        "--url",
        url,
        "--authority",
        authority,
        "--protocol",
        protocol.flag(),
        "--concurrency",
        &if mode == Mode::OneByOne { 1 } else { options.concurrency }.to_string(),
        "--timeout-ms",
        "5000",
        // The same small answer whatever headers the proxy on the path adds (the echo grows with
        // them): what is compared is the proxies' work, not the size of their headers.
        "--header",
        "x-httpapp-reply: brief",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let run_ms = options.seconds * 1000;
    match mode {
        // More requests than any path here can answer in the time: the deadline ends the run.
        Mode::Saturation | Mode::OneByOne => {
            args.extend(["--count".to_owned(), "100000000".to_owned(), "--deadline-ms".to_owned(), run_ms.to_string()])
        }
        // The count ends the run; the deadline only cuts a path that fell far behind.
        Mode::FixedRate => args.extend([
            "--rate".to_owned(),
            options.rate.to_string(),
            "--count".to_owned(),
            (u64::from(options.rate) * options.seconds).to_string(),
            "--deadline-ms".to_owned(),
            (run_ms + slack().as_millis() as u64).to_string(),
        ]),
        Mode::Count(count) => args.extend([
            "--count".to_owned(),
            count.to_string(),
            "--deadline-ms".to_owned(),
            (run_ms + slack().as_millis() as u64).to_string(),
        ]),
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Runs `ambit-httpapp load` in the target's client pod; its figures.
pub(super) fn run(target: &Target<'_>, protocol: Protocol, mode: Mode, options: &Options) -> anyhow::Result<Run> {
    let args = args(&target.url, &target.authority, protocol, mode, options, &[]);
    let summary = summary(target.client, &args)?;
    let run = Run::from_summary(&summary).with_context(|| format!("load {}", args.join(" ")))?;
    let share = run.failed as f64 / (run.ok + run.failed) as f64;
    if share > MAX_FAILED_SHARE {
        bail!("{:.1} % of the requests failed (load {}): {summary}", share * 100.0, args.join(" "));
    }
    Ok(run)
}

/// Runs `args` (a `load`) in `client` to completion; its summary event.
pub(super) fn summary(client: &Pod, args: &[String]) -> anyhow::Result<Value> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let events = client.run_httpapp(&args)?;
    events.into_iter().rev().find(|e| e["event"] == "summary").context("ambit-httpapp load printed no summary")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_summary_gives_answered_requests_per_second_and_latency() {
        let summary = json!({
            "event": "summary", "sent": 1010, "statuses": {"200": 1000, "503": 5},
            "elapsedMs": 500, "latencyUs": {"p50": 120, "p90": 300, "p99": 900, "max": 5000},
        });
        let run = Run::from_summary(&summary).unwrap();
        assert_eq!((run.ok, run.failed), (1000, 10), "503s and transport errors both count as failed");
        assert_eq!(run.rps(), 2000.0);
        assert_eq!((run.p50_us, run.p99_us), (120.0, 900.0));
        let nothing = json!({"sent": 5, "statuses": {}, "elapsedMs": 5000, "latencyUs": {"p50": null}});
        assert!(Run::from_summary(&nothing).is_err());
    }

    #[test]
    fn both_modes_are_bounded_in_count_and_time() {
        let options = Options::parse(&["--envoy".into(), "e".into(), "--seconds".into(), "3".into()]).unwrap();
        let text = |mode| args("http://10.0.0.1:8080/bench", "echo:8080", Protocol::H2c, mode, &options, &[]).join(" ");
        let saturation = text(Mode::Saturation);
        assert!(saturation.contains("--count 100000000") && saturation.contains("--deadline-ms 3000"), "{saturation}");
        assert!(!saturation.contains("--rate"));
        let fixed = text(Mode::FixedRate);
        assert!(fixed.contains("--rate 1000 --count 3000 --deadline-ms 13000"), "{fixed}");
        assert!(fixed.contains("--protocol h2c") && fixed.contains("--concurrency 16"), "{fixed}");
        assert!(fixed.contains("--header x-httpapp-reply: brief"), "{fixed}");
        let one = text(Mode::OneByOne);
        assert!(one.contains("--concurrency 1 ") && one.contains("--deadline-ms 3000"), "{one}");
        let counted = text(Mode::Count(200));
        assert!(counted.contains("--count 200 --deadline-ms 13000") && !counted.contains("--rate"), "{counted}");
    }
}
