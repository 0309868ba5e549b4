//! The controller's Prometheus metrics, served as text on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::crd::{Phase, StreamJobStatus};
use crate::error::Error;

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

/// Counters of reconciles, failures by reason, reconcile durations, jobs by
/// phase, and each job's own figures.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Count per bucket (the last is +Inf), and the sum of seconds in micros.
    durations: [AtomicU64; BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    jobs: Mutex<BTreeMap<(String, String), JobFigures>>,
}

/// What the last reconcile of a job wrote in its status.
#[derive(Debug, Clone, Default, PartialEq)]
struct JobFigures {
    phase: Option<Phase>,
    /// When its newest checkpoint completed.
    last_checkpoint: Option<jiff::Timestamp>,
    /// Savepoints failed in a row.
    savepoint_failures: u32,
    restarts: u32,
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

    /// Records what job `ns/name`'s status says.
    pub fn observe(&self, ns: &str, name: &str, status: &StreamJobStatus) {
        let figures = JobFigures {
            phase: status.phase,
            last_checkpoint: status
                .last_checkpoint
                .as_ref()
                .and_then(|c| c.time.parse().ok()),
            savepoint_failures: status.savepoint_failures,
            restarts: status.restarts,
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.to_string(), name.to_string()), figures);
    }

    /// Forgets a deleted job.
    pub fn forget(&self, ns: &str, name: &str) {
        self.jobs
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
        self.render_jobs(&mut out, jiff::Timestamp::now());
        out
    }

    /// Jobs by phase, and per job (labels `namespace`, `name`): its phase, the
    /// age of its newest checkpoint, savepoints failed in a row and restarts.
    fn render_jobs(&self, out: &mut String, now: jiff::Timestamp) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let phase_name = |p: Option<Phase>| p.map_or("Unknown".to_string(), |p| format!("{p:?}"));
        let _ = writeln!(out, "# HELP weir_controller_jobs StreamJobs by phase.");
        let _ = writeln!(out, "# TYPE weir_controller_jobs gauge");
        let mut by_phase: BTreeMap<String, u64> = BTreeMap::new();
        for figures in jobs.values() {
            *by_phase.entry(phase_name(figures.phase)).or_default() += 1;
        }
        for (phase, n) in by_phase {
            let _ = writeln!(out, "weir_controller_jobs{{phase=\"{phase}\"}} {n}");
        }
        let families = [
            (
                "weir_streamjob_phase",
                "The job's phase (1 for the phase it is in).",
            ),
            (
                "weir_streamjob_last_checkpoint_age_seconds",
                "Seconds since the job's newest checkpoint completed.",
            ),
            (
                "weir_streamjob_savepoint_failures",
                "Savepoints of the job that failed in a row.",
            ),
            (
                "weir_streamjob_restarts",
                "Restarts of the job after failures, all deployments.",
            ),
        ];
        for (i, (family, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} gauge");
            for ((ns, name), figures) in jobs.iter() {
                let labels = format!("namespace=\"{ns}\",name=\"{name}\"");
                let value = match i {
                    0 => {
                        let phase = phase_name(figures.phase);
                        let _ = writeln!(out, "{family}{{{labels},phase=\"{phase}\"}} 1");
                        continue;
                    }
                    1 => match figures.last_checkpoint {
                        Some(t) => format!("{:.3}", now.duration_since(t).as_secs_f64().max(0.0)),
                        None => continue,
                    },
                    2 => figures.savepoint_failures.to_string(),
                    _ => figures.restarts.to_string(),
                };
                let _ = writeln!(out, "{family}{{{labels}}} {value}");
            }
        }
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
        let running = |checkpoint: &str, failures| StreamJobStatus {
            phase: Some(Phase::Running),
            last_checkpoint: Some(crate::crd::CheckpointRef {
                id: 7,
                path: "s3://b/chk-7".into(),
                time: checkpoint.into(),
            }),
            savepoint_failures: failures,
            ..Default::default()
        };
        m.observe("ns", "a", &running("2026-12-04T10:00:00Z", 0));
        m.observe("ns", "b", &running("2026-12-04T10:00:30Z", 2));
        let mut jobs = String::new();
        m.render_jobs(&mut jobs, "2026-12-04T10:01:00Z".parse().unwrap());
        for line in [
            "weir_streamjob_phase{namespace=\"ns\",name=\"a\",phase=\"Running\"} 1",
            "weir_streamjob_last_checkpoint_age_seconds{namespace=\"ns\",name=\"a\"} 60.000",
            "weir_streamjob_last_checkpoint_age_seconds{namespace=\"ns\",name=\"b\"} 30.000",
            "weir_streamjob_savepoint_failures{namespace=\"ns\",name=\"b\"} 2",
        ] {
            assert!(jobs.lines().any(|l| l == line), "{line} in\n{jobs}");
        }
        m.forget("ns", "b");
        let text = m.render();
        assert!(!text.contains("name=\"b\""), "{text}");
        m.observe("ns", "b", &running("2026-12-04T10:00:30Z", 2));
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
