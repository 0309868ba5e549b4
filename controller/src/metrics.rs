//! The controller's Prometheus metrics, served as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::crd::Phase;
use crate::error::Error;

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// Counters of reconciles, failures by reason, reconcile durations and jobs by phase.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Count per bucket (the last is +Inf), and the sum of seconds in micros.
    durations: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    phases: Mutex<BTreeMap<(String, String), Option<Phase>>>,
}

impl Metrics {
    /// Records one reconcile and its outcome.
    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(e) = error {
            *self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(e.reason())
                .or_default() += 1;
        }
    }

    /// Records the phase of job `ns/name`.
    pub fn observe_phase(&self, ns: &str, name: &str, phase: Option<Phase>) {
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.to_string(), name.to_string()), phase);
    }

    /// Forgets a deleted job.
    pub fn forget(&self, ns: &str, name: &str) {
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ns.to_string(), name.to_string()));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP weir_controller_reconciles_total Reconciles run."
        );
        let _ = writeln!(out, "# TYPE weir_controller_reconciles_total counter");
        let _ = writeln!(
            out,
            "weir_controller_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP weir_controller_reconcile_failures_total Failed reconciles by reason."
        );
        let _ = writeln!(
            out,
            "# TYPE weir_controller_reconcile_failures_total counter"
        );
        for (reason, n) in self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "weir_controller_reconcile_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_controller_reconcile_duration_seconds Time per reconcile."
        );
        let _ = writeln!(
            out,
            "# TYPE weir_controller_reconcile_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.durations[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "weir_controller_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.durations[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "weir_controller_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "weir_controller_reconcile_duration_seconds_sum {}",
            self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "weir_controller_reconcile_duration_seconds_count {cumulative}"
        );
        let _ = writeln!(out, "# HELP weir_controller_jobs StreamJobs by phase.");
        let _ = writeln!(out, "# TYPE weir_controller_jobs gauge");
        let mut by_phase: BTreeMap<String, u64> = BTreeMap::new();
        for phase in self
            .phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let name = phase.map_or("Unknown".to_string(), |p| format!("{p:?}"));
            *by_phase.entry(name).or_default() += 1;
        }
        for (phase, n) in by_phase {
            let _ = writeln!(out, "weir_controller_jobs{{phase=\"{phase}\"}} {n}");
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let Ok(n) = stream.read(&mut buf).await else {
                return;
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" | "/readyz" => ("200 OK", "ok\n".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {code}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_failures_and_phases_are_exposed() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(20), None);
        m.reconciled(
            Duration::from_secs(2),
            Some(&Error::Coordinator("x".into())),
        );
        m.observe_phase("ns", "a", Some(Phase::Running));
        m.observe_phase("ns", "b", Some(Phase::Running));
        let text = m.render();
        assert!(
            text.contains("weir_controller_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("reconcile_failures_total{reason=\"CoordinatorUnreachable\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("weir_controller_jobs{phase=\"Running\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("duration_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(text.contains("duration_seconds_count 2"), "{text}");
    }
}
