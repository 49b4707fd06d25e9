//! The Prometheus text exposition format (version 0.0.4): each metric's HELP and TYPE lines,
//! then its samples.

use std::fmt::Write;

use super::area::Aggregate;
use super::{ExitReason, Totals, BUCKETS, METHODS, STATUSES};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX: &str = "wsgi_gateway_";

/// The page for `t`; `workers`: the supervisor's own counts (none in a single process).
pub fn render(t: &Totals, workers: Option<&Aggregate>) -> String {
    let mut out = String::with_capacity(4096);
    head(
        &mut out,
        "requests_total",
        "counter",
        "Requests answered, by method class and status class.",
    );
    for (method, row) in METHODS.iter().zip(&t.requests) {
        for (status, n) in STATUSES.iter().zip(row) {
            let _ = writeln!(
                out,
                "{PREFIX}requests_total{{method_class=\"{method}\",status_class=\"{status}\"}} {n}"
            );
        }
    }
    head(
        &mut out,
        "request_duration_seconds",
        "histogram",
        "Time from a request's head being in to its response being written or queued.",
    );
    let mut cumulative = 0u64;
    for (bound, n) in BUCKETS.iter().zip(&t.buckets) {
        cumulative = cumulative.saturating_add(*n);
        let _ = writeln!(
            out,
            "{PREFIX}request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let count = t.count();
    let _ = writeln!(
        out,
        "{PREFIX}request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let _ = writeln!(
        out,
        "{PREFIX}request_duration_seconds_sum {}",
        t.duration_us as f64 / 1e6
    );
    let _ = writeln!(out, "{PREFIX}request_duration_seconds_count {count}");
    let gauges = [
        (
            "requests_in_flight",
            "Requests inside the app now.",
            t.in_flight,
        ),
        ("connections_open", "Client connections open now.", t.open),
        (
            "connections_idle",
            "Keep-alive connections waiting for their next request now.",
            t.idle,
        ),
        (
            "requests_waiting",
            "Connections with a request for a worker thread not yet taken: ready ones fetched from the kernel, and new ones in the TCP listeners' accept queues.",
            t.waiting,
        ),
        (
            "threads",
            "Worker threads (--threads, summed over the workers): how many requests may be inside the app at once.",
            t.threads,
        ),
        (
            "spooled_bytes",
            "Response bytes queued now (memory and temporary files) for clients that read slowly.",
            t.spooled,
        ),
    ];
    for (name, help, v) in gauges {
        head(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{PREFIX}{name} {v}");
    }
    let counters = [
        (
            "bytes_received_total",
            "Bytes read from client connections.",
            t.bytes_received,
        ),
        (
            "bytes_sent_total",
            "Bytes written to client connections.",
            t.bytes_sent,
        ),
        (
            "hung_requests_total",
            "Requests that stayed inside the app longer than --timeout.",
            t.hung,
        ),
    ];
    for (name, help, v) in counters {
        head(&mut out, name, "counter", help);
        let _ = writeln!(out, "{PREFIX}{name} {v}");
    }
    if let Some(w) = workers {
        head(
            &mut out,
            "worker_starts_total",
            "counter",
            "Worker processes started.",
        );
        let starts = w.worker_starts.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(out, "{PREFIX}worker_starts_total {starts}");
        head(
            &mut out,
            "worker_exits_total",
            "counter",
            "Worker processes that exited, by reason.",
        );
        for why in ExitReason::ALL {
            let _ = writeln!(
                out,
                "{PREFIX}worker_exits_total{{reason=\"{}\"}} {}",
                why.label(),
                w.exits(why)
            );
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_ends_with_its_count() {
        let mut t = Totals::default();
        t.buckets[0] = 2;
        t.buckets[3] = 1;
        t.buckets[BUCKETS.len()] = 4;
        t.duration_us = 1_500_000;
        let page = render(&t, None);
        assert!(page.contains("wsgi_gateway_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(page.contains("wsgi_gateway_request_duration_seconds_bucket{le=\"0.05\"} 3\n"));
        assert!(page.contains("wsgi_gateway_request_duration_seconds_bucket{le=\"60\"} 3\n"));
        assert!(page.contains("wsgi_gateway_request_duration_seconds_bucket{le=\"+Inf\"} 7\n"));
        assert!(page.contains("wsgi_gateway_request_duration_seconds_sum 1.5\n"));
        assert!(page.contains("wsgi_gateway_request_duration_seconds_count 7\n"));
        assert!(
            !page.contains("worker_"),
            "no worker metrics in one process"
        );
        // Every sample's metric has its TYPE line before it.
        let mut typed = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "{line}");
            }
        }
    }
}
