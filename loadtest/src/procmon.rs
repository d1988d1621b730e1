//! CPU and memory of the servers under test (given PIDs) and of the generator itself,
//! read from /proc and sampled during the run.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::now_us;

/// Clock ticks per second of utime/stime in /proc (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// utime + stime in ticks, and resident memory in bytes, of one process.
pub fn read_proc(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some((ticks, rss_kb * 1024))
}

/// One reading of a group of processes: summed ticks and RSS.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub t_us: u64,
    pub ticks: u64,
    pub rss: u64,
}

fn read_group(pids: &[u32]) -> Reading {
    let mut r = Reading { t_us: now_us(), ..Reading::default() };
    for &p in pids {
        if let Some((t, rss)) = read_proc(p) {
            r.ticks += t;
            r.rss += rss;
        }
    }
    r
}

#[derive(Default)]
struct Inner {
    server_pids: Vec<u32>,
    gen_pids: Vec<u32>,
    server: Vec<Reading>,
    generator: Vec<Reading>,
}

/// Samples both groups every `interval` until dropped.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Mutex<Inner>>,
}

/// A point in time with both groups read, to delimit a measurement window.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub server: Reading,
    pub generator: Reading,
}

/// Resource use of one group over a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    pub pids: Vec<u32>,
    /// Average CPU over the window, in percent of one core.
    pub cpu_percent: f64,
    /// Highest 1-second-or-so CPU in the window, in percent of one core.
    pub cpu_percent_peak: f64,
    pub rss_bytes_start: u64,
    pub rss_bytes_peak: u64,
    pub rss_bytes_end: u64,
}

impl Monitor {
    pub fn start(server_pids: Vec<u32>, interval: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            server_pids,
            gen_pids: vec![std::process::id()],
            ..Inner::default()
        }));
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let (sp, gp) = {
                    let i = inner.lock();
                    (i.server_pids.clone(), i.gen_pids.clone())
                };
                let (s, g) = (read_group(&sp), read_group(&gp));
                let mut i = inner.lock();
                i.server.push(s);
                i.generator.push(g);
            }
        });
        Monitor { inner }
    }

    pub fn add_generator_pid(&self, pid: u32) {
        self.inner.lock().gen_pids.push(pid);
    }

    pub fn has_server(&self) -> bool {
        !self.inner.lock().server_pids.is_empty()
    }

    pub fn mark(&self) -> Mark {
        let (sp, gp) = {
            let i = self.inner.lock();
            (i.server_pids.clone(), i.gen_pids.clone())
        };
        let m = Mark { server: read_group(&sp), generator: read_group(&gp) };
        let mut i = self.inner.lock();
        i.server.push(m.server);
        i.generator.push(m.generator);
        m
    }

    pub fn server_usage(&self, from: &Mark, to: &Mark) -> Usage {
        let i = self.inner.lock();
        usage(i.server_pids.clone(), &i.server, from.server, to.server)
    }

    pub fn generator_usage(&self, from: &Mark, to: &Mark) -> Usage {
        let i = self.inner.lock();
        usage(i.gen_pids.clone(), &i.generator, from.generator, to.generator)
    }
}

fn cpu(a: Reading, b: Reading) -> f64 {
    let dt = b.t_us.saturating_sub(a.t_us) as f64 / 1e6;
    if dt <= 0.0 {
        return 0.0;
    }
    b.ticks.saturating_sub(a.ticks) as f64 / TICKS_PER_S / dt * 100.0
}

fn usage(pids: Vec<u32>, samples: &[Reading], from: Reading, to: Reading) -> Usage {
    let window: Vec<Reading> =
        samples.iter().copied().filter(|r| r.t_us >= from.t_us && r.t_us <= to.t_us).collect();
    let mut peak = 0f64;
    // Peak over spans of at least one second, so that tick granularity does not dominate.
    let mut start = 0;
    for end in 1..window.len() {
        while start + 1 < end && window[end].t_us - window[start + 1].t_us >= 1_000_000 {
            start += 1;
        }
        if window[end].t_us - window[start].t_us >= 1_000_000 {
            peak = peak.max(cpu(window[start], window[end]));
        }
    }
    let avg = cpu(from, to);
    Usage {
        pids,
        cpu_percent: avg,
        cpu_percent_peak: peak.max(avg),
        rss_bytes_start: from.rss,
        rss_bytes_peak: window.iter().map(|r| r.rss).max().unwrap_or(0).max(from.rss).max(to.rss),
        rss_bytes_end: to.rss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself() {
        let Some((_, rss)) = read_proc(std::process::id()) else {
            panic!("cannot read /proc/self");
        };
        assert!(rss > 0);
    }
}
