//! What a run costs: this process's CPU, the whole machine's, and the peak memory.

use std::time::{Duration, Instant};

use anyhow::Context;

/// A run's costs from `start`: its wall time, this process's CPU and the whole machine's.
pub struct Meter {
    started: Instant,
    cpu: f64,
    all: f64,
}

/// What a run spent, in seconds.
pub struct Spent {
    pub seconds: f64,
    pub cpu: f64,
    pub all: f64,
}

impl Meter {
    pub fn start() -> anyhow::Result<Self> {
        Ok(Self {
            cpu: own_cpu_seconds()?,
            all: machine_busy_seconds()?,
            started: Instant::now(),
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(&self) -> anyhow::Result<Spent> {
        Ok(Spent {
            seconds: self.started.elapsed().as_secs_f64(),
            cpu: own_cpu_seconds()? - self.cpu,
            all: machine_busy_seconds()? - self.all,
        })
    }
}

/// user + sys of this process, from /proc/self/stat (fields 14 and 15, in clock ticks).
fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_in(&std::fs::read_to_string("/proc/self/stat")?)
}

/// user + sys of Postgres server process `pid` on this machine; `None` when there is no such
/// process here (a server elsewhere) or it cannot be read.
pub fn cpu_seconds_of(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.contains("(postgres)")
        .then(|| cpu_seconds_in(&stat).ok())
        .flatten()
}

fn cpu_seconds_in(stat: &str) -> anyhow::Result<f64> {
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or(stat);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks())
}

/// Busy CPU of the whole machine, from /proc/stat's first line.
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: all but idle and iowait.
    let busy: f64 = cpu
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Ok(busy / clock_ticks())
}

fn clock_ticks() -> f64 {
    // Linux reports /proc times in USER_HZ, which is 100 on every mainstream platform.
    100.0
}

pub fn peak_rss_kb() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}
