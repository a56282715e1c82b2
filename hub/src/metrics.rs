//! The hub's counters, rendered in the Prometheus text format (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the commit latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// At most this many distinct label values per labelled counter; further
/// values are counted under `"other"` (a bound on memory and on scrape size).
const MAX_LABELS: usize = 64;

/// The hub's metrics. Every method is cheap and callable from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    edges_connected: AtomicI64,
    documents_sent: AtomicU64,
    documents_received: AtomicU64,
    rejections: LabelledCounter,
    conflicts: LabelledCounter,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    db_failures: LabelledCounter,
    db_reopen_attempts: LabelledCounter,
    db_reopened: LabelledCounter,
    refused: LabelledCounter,
    tombstones_compacted: LabelledCounter,
}

/// A counter with one label, by label value.
#[derive(Debug, Default)]
struct LabelledCounter(Mutex<BTreeMap<String, u64>>);

impl LabelledCounter {
    fn inc(&self, label: &str) {
        self.add(label, 1);
    }

    fn add(&self, label: &str, v: u64) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(label) {
            *n += v;
        } else if map.len() < MAX_LABELS {
            map.insert(label.to_string(), v);
        } else {
            *map.entry("other".to_string()).or_insert(0) += v;
        }
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Metrics {
    /// New metrics, all zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// An edge session started.
    pub fn edge_connected(&self) {
        self.edges_connected.fetch_add(1, Ordering::Relaxed);
    }

    /// An edge session ended.
    pub fn edge_disconnected(&self) {
        self.edges_connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// The number of edge sessions now open.
    pub fn edges_connected(&self) -> i64 {
        self.edges_connected.load(Ordering::Relaxed)
    }

    /// `n` documents were sent to edges.
    pub fn docs_sent(&self, n: u64) {
        self.documents_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` documents were received from edges (and accepted).
    pub fn docs_received(&self, n: u64) {
        self.documents_received.fetch_add(n, Ordering::Relaxed);
    }

    /// A change or request was refused, for `reason` (a short stable code):
    /// for a refused push, the wire code of its
    /// [`Violation`](outpost::sync::Violation) (`Violation::code`, so the
    /// rules that share `invalid_document` share a label); otherwise the
    /// session's code (`protocol`, `unauthorized`, `unsupported_version`).
    pub fn rejection(&self, reason: &str) {
        self.rejections.inc(reason);
    }

    /// A conflict was settled (or kept) under `policy`.
    pub fn conflict(&self, policy: &str) {
        self.conflicts.inc(policy);
    }

    /// A commit took `d`, from request to durable acknowledgement.
    pub fn commit_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A WebSocket frame of `bytes` bytes was received.
    pub fn frame_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A WebSocket frame of `bytes` bytes was sent.
    pub fn frame_out(&self, bytes: usize) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Database `name` failed (a disk error; writes refused until reopened).
    pub fn database_failed(&self, name: &str) {
        self.db_failures.inc(name);
    }

    /// An attempt to reopen failed database `name` started.
    pub fn database_reopen_attempt(&self, name: &str) {
        self.db_reopen_attempts.inc(name);
    }

    /// Failed database `name` was reopened and takes writes again.
    pub fn database_reopened(&self, name: &str) {
        self.db_reopened.inc(name);
    }

    /// A compaction of database `name` removed `n` tombstones
    /// (`crate::compact`).
    pub fn tombstones_compacted(&self, name: &str, n: u64) {
        self.tombstones_compacted.add(name, n);
    }

    /// A connection or session refused by a `[limits]` cap or deadline
    /// (`reason`: one of [`crate::conn::reason`]).
    pub fn connection_refused(&self, reason: &str) {
        self.refused.inc(reason);
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let o = &mut out;

        header(
            o,
            "outpost_edges_connected",
            "gauge",
            "Edge sessions now open.",
        );
        let _ = writeln!(o, "outpost_edges_connected {}", self.edges_connected());

        header(
            o,
            "outpost_documents_sent_total",
            "counter",
            "Documents sent to edges.",
        );
        let _ = writeln!(
            o,
            "outpost_documents_sent_total {}",
            load(&self.documents_sent)
        );

        header(
            o,
            "outpost_documents_received_total",
            "counter",
            "Documents received from edges and accepted.",
        );
        let _ = writeln!(
            o,
            "outpost_documents_received_total {}",
            load(&self.documents_received)
        );

        header(
            o,
            "outpost_rejections_total",
            "counter",
            "Changes or requests refused, by reason.",
        );
        for (reason, n) in self.rejections.snapshot() {
            let _ = writeln!(
                o,
                "outpost_rejections_total{{reason=\"{}\"}} {n}",
                escape_label(&reason)
            );
        }

        header(
            o,
            "outpost_connections_refused_total",
            "counter",
            "Connections or sessions refused by a [limits] cap or deadline, by reason.",
        );
        for (reason, n) in self.refused.snapshot() {
            let _ = writeln!(
                o,
                "outpost_connections_refused_total{{reason=\"{}\"}} {n}",
                escape_label(&reason)
            );
        }

        header(
            o,
            "outpost_conflicts_total",
            "counter",
            "Conflicts met, by the policy that settled them.",
        );
        for (policy, n) in self.conflicts.snapshot() {
            let _ = writeln!(
                o,
                "outpost_conflicts_total{{policy=\"{}\"}} {n}",
                escape_label(&policy)
            );
        }

        header(
            o,
            "outpost_commit_latency_seconds",
            "histogram",
            "Time from commit request to durable acknowledgement.",
        );
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                o,
                "outpost_commit_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            o,
            "outpost_commit_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = load(&self.latency_sum_nanos) as f64 / 1e9;
        let _ = writeln!(o, "outpost_commit_latency_seconds_sum {sum}");
        let _ = writeln!(o, "outpost_commit_latency_seconds_count {count}");

        header(
            o,
            "outpost_frames_total",
            "counter",
            "WebSocket frames, by direction.",
        );
        let _ = writeln!(
            o,
            "outpost_frames_total{{direction=\"in\"}} {}",
            load(&self.frames_in)
        );
        let _ = writeln!(
            o,
            "outpost_frames_total{{direction=\"out\"}} {}",
            load(&self.frames_out)
        );

        header(
            o,
            "outpost_bytes_total",
            "counter",
            "WebSocket payload bytes, by direction.",
        );
        let _ = writeln!(
            o,
            "outpost_bytes_total{{direction=\"in\"}} {}",
            load(&self.bytes_in)
        );
        let _ = writeln!(
            o,
            "outpost_bytes_total{{direction=\"out\"}} {}",
            load(&self.bytes_out)
        );

        for (name, help, counter) in [
            (
                "outpost_db_failures_total",
                "Times a database failed (a disk error; writes refused until it is reopened), by database.",
                &self.db_failures,
            ),
            (
                "outpost_db_reopen_attempts_total",
                "Attempts to reopen a failed database, by database.",
                &self.db_reopen_attempts,
            ),
            (
                "outpost_db_reopened_total",
                "Failed databases reopened (writes taken again), by database.",
                &self.db_reopened,
            ),
            (
                "outpost_tombstones_compacted_total",
                "Tombstones removed by compaction (acknowledged by every device seen within the retention), by database.",
                &self.tombstones_compacted,
            ),
        ] {
            header(o, name, "counter", help);
            for (db, n) in counter.snapshot() {
                let _ = writeln!(o, "{name}{{database=\"{}\"}} {n}", escape_label(&db));
            }
        }
        out
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (`\`, `"` and newlines).
pub(crate) fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::new();
        m.edge_connected();
        m.edge_connected();
        m.edge_disconnected();
        m.docs_sent(5);
        m.docs_received(3);
        m.rejection("out_of_scope");
        m.rejection("out_of_scope");
        m.rejection("bad \"frame\"");
        m.conflict("latest");
        m.commit_latency(Duration::from_millis(3));
        m.commit_latency(Duration::from_secs(10));
        m.frame_in(100);
        m.frame_out(40);
        m.frame_out(2);
        m.database_failed("main");
        m.database_reopen_attempt("main");
        m.database_reopen_attempt("main");
        m.database_reopened("main");
        m.tombstones_compacted("main", 200);
        m.tombstones_compacted("main", 3);
        let text = m.render();
        for line in [
            "outpost_edges_connected 1",
            "outpost_documents_sent_total 5",
            "outpost_documents_received_total 3",
            "outpost_rejections_total{reason=\"out_of_scope\"} 2",
            "outpost_rejections_total{reason=\"bad \\\"frame\\\"\"} 1",
            "outpost_conflicts_total{policy=\"latest\"} 1",
            "outpost_commit_latency_seconds_bucket{le=\"0.001\"} 0",
            "outpost_commit_latency_seconds_bucket{le=\"0.005\"} 1",
            "outpost_commit_latency_seconds_bucket{le=\"5\"} 1",
            "outpost_commit_latency_seconds_bucket{le=\"+Inf\"} 2",
            "outpost_commit_latency_seconds_count 2",
            "outpost_commit_latency_seconds_sum 10.003",
            "outpost_frames_total{direction=\"in\"} 1",
            "outpost_frames_total{direction=\"out\"} 2",
            "outpost_bytes_total{direction=\"in\"} 100",
            "outpost_bytes_total{direction=\"out\"} 42",
            "# TYPE outpost_commit_latency_seconds histogram",
            "outpost_db_failures_total{database=\"main\"} 1",
            "outpost_db_reopen_attempts_total{database=\"main\"} 2",
            "outpost_db_reopened_total{database=\"main\"} 1",
            "outpost_tombstones_compacted_total{database=\"main\"} 203",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_bounded() {
        let m = Metrics::new();
        for i in 0..200 {
            m.rejection(&format!("r{i}"));
        }
        let snap = m.rejections.snapshot();
        assert_eq!(snap.len(), MAX_LABELS + 1);
        assert_eq!(snap["other"], 200 - MAX_LABELS as u64);
    }
}
