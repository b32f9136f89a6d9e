//! Figures shared by the runtime's benchmark examples (`netbench`, `supbench`).
// Each example uses part of it.
#![allow(dead_code)]

use std::time::Duration;

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median (of an even count: the mean of the middle two).
pub fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile (nearest rank; the median of an even count is the mean of the middle
/// two).
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if q == 0.5 && n % 2 == 0 {
        return (v[n / 2 - 1] + v[n / 2]) / 2.0;
    }
    v[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
}

/// The load averages (1, 5, 15 min), comma-separated, for reading the figures.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}
