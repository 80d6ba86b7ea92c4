//! Process identity that survives PID reuse: a PID plus its start time (`/proc/<pid>/stat`
//! field 22, in clock ticks since boot).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self { pid, start_time: start_time(pid).unwrap_or(0) }
    }

    /// `pid` as it is now (None if there is no such process).
    pub fn of(pid: u32) -> Option<Self> {
        start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// The same process (not a reused PID) still exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some(fields) => fields.state != 'Z' && fields.start_time == self.start_time,
            None => false,
        }
    }

    /// Parses the owner file format: `<pid> <start time>`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        Some(Self { pid, start_time })
    }

    pub fn to_line(self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    /// SIGKILLs the process if it is still this one, then waits (bounded) for it to be gone.
    /// For processes that are not our children (we cannot reap them).
    pub fn kill_and_wait_gone(&self, timeout: Duration) -> bool {
        if !self.is_alive() {
            return true;
        }
        // SAFETY: plain syscall; the start time check above makes a reused PID very unlikely.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        let deadline = Instant::now() + timeout;
        while self.is_alive() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

struct StatFields {
    state: char,
    start_time: u64,
}

fn stat_fields(pid: u32) -> Option<StatFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 (starttime) is index 19.
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(StatFields { state, start_time })
}

/// The start time of `pid`, if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).map(|f| f.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_round_trips() {
        let me = ProcId::current();
        assert!(me.start_time > 0);
        assert!(me.is_alive());
        assert_eq!(ProcId::parse(&me.to_line()), Some(me));
        assert!(!ProcId { start_time: me.start_time + 1, ..me }.is_alive());
    }
}
