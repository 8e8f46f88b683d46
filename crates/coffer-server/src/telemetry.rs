//! Prometheus metrics for `GET /v1/sys/metrics`: requests by status class
//! and their latency, and the audit writer's commits, the latency every
//! audited request waits on. One recorder per process; a second server in
//! the same process (tests) shares it.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds; from a tenth of a millisecond (a commit on a fast disk) to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
/// Histogram samples are held until a scrape or an upkeep drains them.
const UPKEEP_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct Metrics {
    handle: Option<PrometheusHandle>,
    requests: [Counter; 5],
    request_seconds: Histogram,
    pub(crate) audit_commit_seconds: Histogram,
    pub(crate) audit_batch_records: Histogram,
    pub(crate) audit_records: Counter,
    pub(crate) audit_failures: Counter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics, installing the recorder on first use.
pub(crate) fn get() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let handle = install();
        let class = |c: &'static str| metrics::counter!("coffer_requests_total", "class" => c);
        metrics::describe_counter!("coffer_requests_total", "HTTP requests answered, by status class");
        metrics::describe_histogram!(
            "coffer_request_duration_seconds",
            "Time from a request's arrival to its answer"
        );
        metrics::describe_histogram!(
            "coffer_audit_commit_duration_seconds",
            "One audit commit: records written and fsynced before any of them is answered"
        );
        metrics::describe_histogram!("coffer_audit_batch_records", "Audit records per commit");
        metrics::describe_counter!("coffer_audit_records_total", "Audit records committed");
        metrics::describe_counter!(
            "coffer_audit_failures_total",
            "Audit commits that failed (their requests were refused)"
        );
        Metrics {
            handle,
            requests: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            request_seconds: metrics::histogram!("coffer_request_duration_seconds"),
            audit_commit_seconds: metrics::histogram!("coffer_audit_commit_duration_seconds"),
            audit_batch_records: metrics::histogram!("coffer_audit_batch_records"),
            audit_records: metrics::counter!("coffer_audit_records_total"),
            audit_failures: metrics::counter!("coffer_audit_failures_total"),
        }
    })
}

fn install() -> Option<PrometheusHandle> {
    let built = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("coffer_audit_batch_records".into()), BATCH_BUCKETS))
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            static UPKEEP: Once = Once::new();
            let h = handle.clone();
            UPKEEP.call_once(|| {
                let _ = std::thread::Builder::new()
                    .name("coffer-metrics".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            h.run_upkeep();
                        }
                    });
            });
            Some(handle)
        }
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            None
        }
    }
}

impl Metrics {
    pub(crate) fn request(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].increment(1);
        self.request_seconds.record(elapsed);
    }

    /// The Prometheus text exposition, or None if no recorder could be installed.
    pub(crate) fn render(&self) -> Option<String> {
        self.handle.as_ref().map(PrometheusHandle::render)
    }
}
