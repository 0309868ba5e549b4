//! The coordinator's HTTP endpoints: `/healthz`, `/readyz`, `/metrics` (Prometheus
//! text) and `/v1/status` (JSON). A small HTTP/1.1 server on its own thread: GET
//! only, one request per connection, which is all probes and scrapers need.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use weir_proto::v1;

use crate::cluster::coordinator::status::StatusBoard;
use crate::error::{Error, Result};

/// Serves the endpoints on `listen` until the process exits; returns the bound address.
pub fn serve(listen: &str, status: Arc<StatusBoard>) -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(listen).map_err(|e| Error::Io {
        action: "listening for HTTP on",
        path: listen.into(),
        source: e,
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("reading the address of", listen, e))?;
    std::thread::Builder::new()
        .name("weir-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = respond(stream, &status) {
                    tracing::debug!(error = %e, "HTTP request failed");
                }
            }
        })
        .map_err(|e| Error::Internal(format!("spawning the HTTP server: {e}")))?;
    Ok(address)
}

fn respond(stream: TcpStream, status: &StatusBoard) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers; nothing in them matters here.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (code, content_type, body) = match path {
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let phase = status.phase();
            if matches!(
                phase.state,
                v1::JobState::Running | v1::JobState::Savepointing
            ) {
                (200, "text/plain", "ready\n".to_string())
            } else {
                (
                    503,
                    "text/plain",
                    format!("{}: {}\n", state_name(phase.state), phase.message),
                )
            }
        }
        "/metrics" => (200, "text/plain; version=0.0.4", prometheus(status)),
        "/v1/status" => (
            200,
            "application/json",
            status_json(&status.snapshot()).to_string(),
        ),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The lowercase name of a job state, as in `/v1/status` and `weir status`.
pub fn state_name(state: v1::JobState) -> &'static str {
    match state {
        v1::JobState::WaitingForSlots => "waiting-for-slots",
        v1::JobState::Running => "running",
        v1::JobState::Restarting => "restarting",
        v1::JobState::Savepointing => "savepointing",
        v1::JobState::Finished => "finished",
        v1::JobState::Failed => "failed",
        v1::JobState::Canceled => "canceled",
        v1::JobState::Stopped => "stopped",
        v1::JobState::Unspecified => "unknown",
    }
}

/// A status as the JSON document of `/v1/status` and `weir status --json`.
pub fn status_json(s: &v1::JobStatus) -> serde_json::Value {
    serde_json::json!({
        "job": s.job,
        "job_id": s.job_id,
        "state": state_name(v1::JobState::try_from(s.state).unwrap_or(v1::JobState::Unspecified)),
        "message": s.message,
        "parallelism": s.parallelism,
        "restarts": s.restarts,
        "attempt": s.attempt,
        "slots": {"registered": s.slots_registered, "needed": s.slots_needed},
        "latest_checkpoint": s.latest_checkpoint.as_ref().map(|c| serde_json::json!({
            "id": c.id, "path": c.path, "time_unix_ms": c.time_unix_ms,
            "duration_ms": c.duration_ms, "size_bytes": c.size_bytes,
        })),
        "protocol_version": s.protocol_version,
        "damaged_checkpoints_skipped": s.damaged_checkpoints_skipped,
    })
}

/// One sample per operator subtask of `ops`: the counter `f` of each, labelled
/// by operator and subtask.
fn per_subtask(
    ops: &[&v1::OperatorCounters],
    f: fn(&v1::OperatorCounters) -> u64,
) -> Vec<(String, f64)> {
    ops.iter()
        .map(|o| {
            (
                format!("{{operator=\"{}\",subtask=\"{}\"}}", o.uid, o.subtask),
                f(o) as f64,
            )
        })
        .collect()
}

fn prometheus(status: &StatusBoard) -> String {
    let m = &status.metrics;
    let s = status.snapshot();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        "weir_checkpoints_completed_total",
        "counter",
        "Checkpoints completed.",
        &one(m.checkpoints_completed.load(Ordering::Relaxed) as f64),
    );
    metric(
        "weir_checkpoints_failed_total",
        "counter",
        "Checkpoints declined or timed out.",
        &one(m.checkpoints_failed.load(Ordering::Relaxed) as f64),
    );
    metric(
        "weir_checkpoints_failed_in_a_row",
        "gauge",
        "Checkpoints declined, timed out or not written since the last one completed.",
        &one(m.checkpoints_failed_in_a_row.load(Ordering::Relaxed) as f64),
    );
    metric(
        "weir_checkpoints_damaged_skipped_total",
        "counter",
        "Damaged checkpoints passed over when restoring.",
        &one(s.damaged_checkpoints_skipped as f64),
    );
    metric(
        "weir_restarts_total",
        "counter",
        "Restarts of the job after failures.",
        &one(s.restarts as f64),
    );
    if let Some(c) = &s.latest_checkpoint {
        metric(
            "weir_last_checkpoint_duration_seconds",
            "gauge",
            "Duration of the latest completed checkpoint.",
            &one(c.duration_ms as f64 / 1e3),
        );
        metric(
            "weir_last_checkpoint_size_bytes",
            "gauge",
            "State size of the latest completed checkpoint.",
            &one(c.size_bytes as f64),
        );
        metric(
            "weir_last_checkpoint_timestamp_seconds",
            "gauge",
            "When the latest completed checkpoint was triggered.",
            &one(c.time_unix_ms as f64 / 1e3),
        );
        metric(
            "weir_last_checkpoint_id",
            "gauge",
            "Id of the latest completed checkpoint.",
            &one(c.id as f64),
        );
    }
    metric(
        "weir_slots_registered",
        "gauge",
        "Slots offered by registered workers.",
        &one(f64::from(s.slots_registered)),
    );
    metric(
        "weir_slots_needed",
        "gauge",
        "Slots the job needs.",
        &one(f64::from(s.slots_needed)),
    );
    let state = v1::JobState::try_from(s.state).unwrap_or(v1::JobState::Unspecified);
    metric(
        "weir_job_state",
        "gauge",
        "1 for the job's current state.",
        &[(format!("{{state=\"{}\"}}", state_name(state)), 1.0)],
    );
    let counters = status.shared.lock().counters();
    let all: Vec<&v1::OperatorCounters> = counters.operators.iter().collect();
    let ops = |f: fn(&v1::OperatorCounters) -> u64| per_subtask(&all, f);
    metric(
        "weir_records_in_total",
        "counter",
        "Records into each operator subtask.",
        &ops(|o| o.records_in),
    );
    metric(
        "weir_records_out_total",
        "counter",
        "Records out of each operator subtask.",
        &ops(|o| o.records_out),
    );
    let seconds = |f: fn(&v1::OperatorCounters) -> u64| -> Vec<(String, f64)> {
        ops(f).into_iter().map(|(l, ns)| (l, ns / 1e9)).collect()
    };
    metric(
        "weir_snapshot_sync_seconds",
        "gauge",
        "How long each operator subtask's last snapshot held up its task (the synchronous part of a checkpoint).",
        &seconds(|o| o.snapshot_sync_ns),
    );
    metric(
        "weir_snapshot_sync_max_seconds",
        "gauge",
        "The longest snapshot of each operator subtask held up its task since it started.",
        &seconds(|o| o.snapshot_sync_max_ns),
    );
    let sources: Vec<&v1::OperatorCounters> =
        counters.operators.iter().filter(|o| o.is_source).collect();
    let per_source = |f: fn(&v1::OperatorCounters) -> u64| per_subtask(&sources, f);
    metric(
        "weir_source_bytes_read_total",
        "counter",
        "Bytes each source subtask read (keys and values of Kafka records).",
        &per_source(|o| o.bytes_read),
    );
    metric(
        "weir_source_bad_records_total",
        "counter",
        "Records each source subtask could not decode (failed on or sent to a dead-letter topic).",
        &per_source(|o| o.bad_records),
    );
    let split_lags: Vec<(String, f64)> = sources
        .iter()
        .flat_map(|o| {
            o.split_lags.iter().map(|l| {
                (
                    format!("{{operator=\"{}\",split=\"{}\"}}", o.uid, l.split),
                    l.lag as f64,
                )
            })
        })
        .collect();
    metric(
        "weir_source_split_lag_records",
        "gauge",
        "Records of each source split not read yet (a Kafka partition's consumer lag).",
        &split_lags,
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let lags: Vec<(String, f64)> = counters
        .operators
        .iter()
        .filter_map(|o| {
            let watermark = o.watermark_ms.filter(|w| *w != i64::MAX)?;
            Some((
                format!("{{operator=\"{}\",subtask=\"{}\"}}", o.uid, o.subtask),
                now_ms.saturating_sub(watermark) as f64 / 1e3,
            ))
        })
        .collect();
    metric(
        "weir_watermark_lag_seconds",
        "gauge",
        "Wall-clock time minus the last watermark that reached each operator subtask (event-time jobs).",
        &lags,
    );
    metric(
        "weir_backpressured_seconds_total",
        "counter",
        "Time tasks spent blocked on full outputs.",
        &one(counters.backpressured_ns as f64 / 1e9),
    );
    metric(
        "weir_alignment_seconds_total",
        "counter",
        "Time tasks spent aligning barriers.",
        &one(counters.alignment_ns as f64 / 1e9),
    );
    out
}
