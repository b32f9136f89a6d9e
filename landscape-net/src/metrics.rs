//! Prometheus text metrics: requests by route and status, a latency histogram, upstream errors,
//! held requests and wake-ups.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counters of one route by status code and its latency histogram (lock-free); shared
/// across route-table swaps by name.
pub(crate) struct RouteStats {
    by_status: Box<[AtomicU64]>,
    latency: Histogram,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            latency: Histogram::default(),
        }
    }
}

impl RouteStats {
    pub(crate) fn count(&self, status: u16) {
        if let Some(c) = self.by_status.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Records one response's time to headers.
    pub(crate) fn observe(&self, d: Duration) {
        self.latency.observe(d);
    }

    fn counts(&self) -> Vec<(u16, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(s, c)| {
                let n = c.load(Relaxed);
                (n > 0).then_some((s as u16, n))
            })
            .collect()
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Appends the histogram `name` with `labels` (`k="v",` pairs, may be empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// All metrics of a router.
#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<HashMap<String, Arc<RouteStats>>>,
    /// Requests that matched no route.
    pub(crate) unrouted: AtomicU64,
    latency: Histogram,
    upstream_errors: Mutex<HashMap<String, u64>>,
    pub(crate) wakes: AtomicU64,
    pub(crate) wake_failures: AtomicU64,
    pub(crate) held_total: AtomicU64,
    pub(crate) held_rejected: AtomicU64,
}

impl Metrics {
    pub(crate) fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut m = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    pub(crate) fn observe(&self, d: Duration) {
        self.latency.observe(d);
    }

    pub(crate) fn upstream_error(&self, service: &str) {
        let mut m = self
            .upstream_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(service.to_string()).or_default() += 1;
    }

    /// Renders everything; `held` is (service, currently held requests).
    pub(crate) fn render(
        &self,
        held: &[(String, usize)],
        activity: &[(String, crate::Activity)],
    ) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP landscape_router_requests_total Requests by route and status.\n");
        out.push_str("# TYPE landscape_router_requests_total counter\n");
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        for name in names {
            let v = routes[name].counts();
            for (status, n) in v {
                let _ = writeln!(
                    out,
                    "landscape_router_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(name)
                );
            }
        }
        drop(routes);
        let _ = writeln!(
            out,
            "landscape_router_requests_total{{route=\"\",status=\"404\"}} {}",
            self.unrouted.load(Relaxed)
        );
        out.push_str(
            "# HELP landscape_router_request_duration_seconds Time to response headers.\n",
        );
        out.push_str("# TYPE landscape_router_request_duration_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.latency.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "landscape_router_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        let count = self.latency.count.load(Relaxed);
        let _ = writeln!(
            out,
            "landscape_router_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "landscape_router_request_duration_seconds_sum {}",
            self.latency.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "landscape_router_request_duration_seconds_count {count}"
        );
        out.push_str(
            "# HELP landscape_router_route_duration_seconds Time to response headers by route.\n",
        );
        out.push_str("# TYPE landscape_router_route_duration_seconds histogram\n");
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        for name in names {
            routes[name].latency.render(
                &mut out,
                "landscape_router_route_duration_seconds",
                &format!("route=\"{}\",", escape(name)),
            );
        }
        drop(routes);
        out.push_str("# HELP landscape_router_upstream_errors_total Failed upstream connects and exchanges.\n");
        out.push_str("# TYPE landscape_router_upstream_errors_total counter\n");
        let errs = self
            .upstream_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut errs: Vec<_> = errs.iter().collect();
        errs.sort();
        for (svc, n) in errs {
            let _ = writeln!(
                out,
                "landscape_router_upstream_errors_total{{service=\"{}\"}} {n}",
                escape(svc)
            );
        }
        out.push_str("# HELP landscape_router_held_requests Requests currently held while a service wakes.\n");
        out.push_str("# TYPE landscape_router_held_requests gauge\n");
        for (svc, n) in held {
            let _ = writeln!(
                out,
                "landscape_router_held_requests{{service=\"{}\"}} {n}",
                escape(svc)
            );
        }
        out.push_str("# TYPE landscape_router_held_requests_total counter\n");
        let _ = writeln!(
            out,
            "landscape_router_held_requests_total {}",
            self.held_total.load(Relaxed)
        );
        out.push_str("# TYPE landscape_router_held_rejected_total counter\n");
        let _ = writeln!(
            out,
            "landscape_router_held_rejected_total {}",
            self.held_rejected.load(Relaxed)
        );
        out.push_str("# TYPE landscape_router_wakes_total counter\n");
        let _ = writeln!(
            out,
            "landscape_router_wakes_total {}",
            self.wakes.load(Relaxed)
        );
        out.push_str("# TYPE landscape_router_wake_failures_total counter\n");
        let _ = writeln!(
            out,
            "landscape_router_wake_failures_total {}",
            self.wake_failures.load(Relaxed)
        );
        out.push_str("# HELP landscape_router_in_flight Requests in flight per service.\n");
        out.push_str("# TYPE landscape_router_in_flight gauge\n");
        for (svc, a) in activity {
            let _ = writeln!(
                out,
                "landscape_router_in_flight{{service=\"{}\"}} {}",
                escape(svc),
                a.in_flight
            );
        }
        out.push_str(
            "# HELP landscape_router_upgraded_connections Open upgraded (WebSocket) connections.\n",
        );
        out.push_str("# TYPE landscape_router_upgraded_connections gauge\n");
        for (svc, a) in activity {
            let _ = writeln!(
                out,
                "landscape_router_upgraded_connections{{service=\"{}\"}} {}",
                escape(svc),
                a.upgraded
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
