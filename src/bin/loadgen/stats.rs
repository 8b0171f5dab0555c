//! Latency histograms and the server's memory and CPU time, read from /proc.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Latencies in microseconds, 1 µs to 60 s, three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A quantile in milliseconds.
pub fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Resident memory and CPU time (user + system) of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    pub cpu: Duration,
}

impl std::iter::Sum for ProcessSample {
    fn sum<I: Iterator<Item = Self>>(samples: I) -> Self {
        samples.fold(Self::default(), |total, s| Self {
            rss_bytes: total.rss_bytes + s.rss_bytes,
            cpu: total.cpu + s.cpu,
        })
    }
}

pub fn sample(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports CPU time in clock ticks of 1/100 s on every platform we run on.
    Some(ProcessSample {
        rss_bytes: rss_kib * 1024,
        cpu: Duration::from_millis(ticks * 10),
    })
}
