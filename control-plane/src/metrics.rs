//! The control plane's metrics, rendered in Prometheus' text format at `/metrics`.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// A histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(value.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    pub pushes_full: AtomicU64,
    pub pushes_delta: AtomicU64,
    pub push_bytes: AtomicU64,
    pub nacks: AtomicU64,
    /// From compiling a configuration to a proxy's ACK of it.
    pub convergence: Histogram,
    pub compile: Histogram,
    pub config_version: AtomicU64,
    pub rejected_objects: AtomicU64,
    pub resources: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            pushes_full: AtomicU64::new(0),
            pushes_delta: AtomicU64::new(0),
            push_bytes: AtomicU64::new(0),
            nacks: AtomicU64::new(0),
            convergence: Histogram::new(LATENCY_BOUNDS),
            compile: Histogram::new(LATENCY_BOUNDS),
            config_version: AtomicU64::new(0),
            rejected_objects: AtomicU64::new(0),
            resources: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Prometheus text exposition; `connected` is (node proxies, waypoints).
    pub fn render(&self, connected: (usize, usize)) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, labels: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {value}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        let _ = writeln!(
            out,
            "# HELP ambit_cp_pushes_total Updates sent to proxies.\n# TYPE ambit_cp_pushes_total counter"
        );
        let _ = writeln!(out, "ambit_cp_pushes_total{{type=\"full\"}} {}", self.pushes_full.load(Ordering::Relaxed));
        let _ = writeln!(out, "ambit_cp_pushes_total{{type=\"delta\"}} {}", self.pushes_delta.load(Ordering::Relaxed));
        counter(
            &mut out,
            "ambit_cp_push_bytes_total",
            "Bytes of updates sent to proxies.",
            "",
            self.push_bytes.load(Ordering::Relaxed),
        );
        counter(&mut out, "ambit_cp_nacks_total", "Updates proxies refused.", "", self.nacks.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP ambit_cp_connected_proxies Proxies with an open subscription.\n# TYPE ambit_cp_connected_proxies gauge"
        );
        let _ = writeln!(out, "ambit_cp_connected_proxies{{type=\"node\"}} {}", connected.0);
        let _ = writeln!(out, "ambit_cp_connected_proxies{{type=\"waypoint\"}} {}", connected.1);
        gauge(
            &mut out,
            "ambit_cp_config_version",
            "Version of the configuration in force.",
            self.config_version.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "ambit_cp_rejected_objects",
            "Config objects currently rejected (their last good version, if any, is in force).",
            self.rejected_objects.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "ambit_cp_resources",
            "Compiled resources for node proxies.",
            self.resources.load(Ordering::Relaxed),
        );
        self.convergence.render(
            &mut out,
            "ambit_cp_push_latency_seconds",
            "Time from compiling a configuration to a proxy acknowledging it.",
        );
        self.compile.render(&mut out, "ambit_cp_compile_seconds", "Time to compile a configuration snapshot.");
        out
    }
}
