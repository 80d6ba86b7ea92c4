//! What a proxy process spends per request: CPU time (user + system, every thread, from
//! `/proc/<pid>/stat`) and context switches (voluntary + involuntary, summed over
//! `/proc/<pid>/task/*/status`), read around the closed-loop run. Requests/s compares whole
//! paths on shared CPUs (load tool, server and node proxies included); CPU per request compares
//! the two proxies themselves. [`Machine`] says how busy all CPUs were meanwhile: a path whose
//! stages take turns (one h2c connection carries all requests as one batch from process to
//! process) leaves CPUs idle, and then its requests/s are bound by the sum of the stages' CPU per
//! request, not by the CPUs.

use std::time::Duration;

use anyhow::Context;

/// A process's totals at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Usage {
    pub(super) cpu: Duration,
    pub(super) switches: u64,
}

impl Usage {
    pub(super) fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
        let ticks = cpu_ticks(&stat).with_context(|| format!("/proc/{pid}/stat: {stat}"))?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let cpu = Duration::from_nanos(ticks * 1_000_000_000 / per_second);
        let dir = format!("/proc/{pid}/task");
        let mut switches = 0;
        for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            // A thread may end between the listing and the read; it no longer counts.
            let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
            switches += context_switches(&status);
        }
        Ok(Self { cpu, switches })
    }

    /// What was spent between `before` and `self`.
    pub(super) fn since(&self, before: &Usage) -> Usage {
        Usage { cpu: self.cpu.saturating_sub(before.cpu), switches: self.switches.saturating_sub(before.switches) }
    }
}

/// What the proxy on a path spent per answered request in a closed-loop run.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PerRequest {
    pub(super) cpu_us: f64,
    pub(super) switches: f64,
}

impl PerRequest {
    pub(super) fn new(spent: Usage, requests: u64) -> Self {
        let n = requests.max(1) as f64;
        Self { cpu_us: spent.cpu.as_secs_f64() * 1e6 / n, switches: spent.switches as f64 / n }
    }
}

/// The machine's CPU time counters (`/proc/stat`'s `cpu` line, all CPUs) at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Machine {
    busy: u64,
    total: u64,
}

impl Machine {
    pub(super) fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
        machine_ticks(&stat).with_context(|| format!("/proc/stat has no cpu line: {stat}"))
    }

    /// The share of all CPUs' time spent busy (not idle, not waiting for IO) since `before`.
    pub(super) fn busy_since(&self, before: &Machine) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 { 0.0 } else { self.busy.saturating_sub(before.busy) as f64 / total as f64 }
    }
}

/// `cpu  user nice system idle iowait irq softirq steal …`: busy is all but idle and iowait
/// (guest time is already counted in user).
fn machine_ticks(stat: &str) -> Option<Machine> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some(Machine { busy, total: busy + idle + iowait })
}

/// utime + stime (fields 14 and 15; the command name in field 2 may hold spaces, so count from
/// its closing parenthesis).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, index 11 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn context_switches(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_past_a_command_name_with_spaces() {
        let stat = "4242 (wrk:worker 0) S 1 4242 4242 0 -1 4194560 951 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(325), "utime 250 + stime 75");
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let before = machine_ticks("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        let after = machine_ticks("cpu  400 0 150 1100 50 10 40 0 0 0\n").unwrap();
        // Busy grew by 300 + 100 + 10 + 40 = 450 of 750 ticks.
        assert_eq!(after.busy_since(&before), 0.6);
        assert_eq!(machine_ticks("intr 1 2 3"), None);
        assert!(Machine::read().unwrap().total > 0);
    }

    #[test]
    fn both_kinds_of_context_switch_are_summed() {
        let status = "Name:\tenvoy\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(context_switches(status), 127);
    }

    #[test]
    fn this_process_spends_cpu_and_switches() {
        let pid = std::process::id();
        let before = Usage::read(pid).unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        std::thread::sleep(Duration::from_millis(20));
        let spent = Usage::read(pid).unwrap().since(&before);
        assert!(spent.cpu >= Duration::from_millis(10), "{spent:?}");
        assert!(spent.switches >= 1, "the sleep switched: {spent:?}");
        let per = PerRequest::new(spent, 10);
        assert!((per.cpu_us - spent.cpu.as_secs_f64() * 1e5).abs() < 1e-6);
    }
}
