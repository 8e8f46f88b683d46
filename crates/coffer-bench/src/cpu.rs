//! CPU accounting from /proc around each run: the server's CPU time, the
//! load generator's, and everything else on the machine (other processes
//! and hypervisor steal), so a report shows whether the machine was quiet.

use std::time::Instant;

/// Clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

/// (utime + stime) of a process, in seconds.
fn process_seconds(pid: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / TICKS
}

/// Machine-wide (process busy, irq + softirq, steal) seconds summed over CPUs.
fn machine_seconds() -> (f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0.0, 0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2);
    (busy / TICKS, (get(5) + get(6)) / TICKS, get(7) / TICKS)
}

pub(crate) struct Snapshot {
    at: Instant,
    server: f64,
    me: f64,
    busy: f64,
    irq: f64,
    steal: f64,
}

/// CPU used between two snapshots, in seconds, and the wall time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) wall: f64,
    pub(crate) server: f64,
    pub(crate) load_generator: f64,
    /// Busy CPU time of every other process on the machine.
    pub(crate) other: f64,
    /// Interrupt and softirq time (loopback TCP runs mostly here).
    pub(crate) irq: f64,
    pub(crate) steal: f64,
}

impl Snapshot {
    pub(crate) fn take(server_pid: u32) -> Self {
        let (busy, irq, steal) = machine_seconds();
        Snapshot {
            at: Instant::now(),
            server: process_seconds(&server_pid.to_string()),
            me: process_seconds("self"),
            busy,
            irq,
            steal,
        }
    }

    pub(crate) fn since(&self, earlier: &Snapshot) -> Usage {
        let server = (self.server - earlier.server).max(0.0);
        let me = (self.me - earlier.me).max(0.0);
        Usage {
            wall: (self.at - earlier.at).as_secs_f64(),
            server,
            load_generator: me,
            other: (self.busy - earlier.busy - server - me).max(0.0),
            irq: (self.irq - earlier.irq).max(0.0),
            steal: (self.steal - earlier.steal).max(0.0),
        }
    }
}
