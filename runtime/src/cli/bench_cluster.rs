//! `weir bench --workers N`: the job on a coordinator in this process and N worker
//! processes on 127.0.0.1, without slot sharing, so that every subtask has a slot
//! of its own and a hash exchange crosses TCP between workers.
//!
//! CPU time is counted over every process: this one (the coordinator) and the
//! workers, whose usage `getrusage(RUSAGE_CHILDREN)` reports once they are reaped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::coordinator::{run_coordinator, CoordinatorConfig};
use crate::error::{Error, Result};
use crate::exec::runner::RunConfig;

/// CPU seconds (user + sys) of this process (`RUSAGE_SELF`) or of its reaped
/// children (`RUSAGE_CHILDREN`).
#[allow(unsafe_code)]
pub fn cpu_seconds_of(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the zero-initialised struct we own; an
    // all-zero rusage is a valid value of the type.
    let usage = unsafe {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed().assume_init();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// What one measured run cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// CPU seconds over every process of the run.
    pub cpu: f64,
    /// Wall seconds.
    pub wall: f64,
}

/// A free port on 127.0.0.1 (free when asked; the coordinator binds it next).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Internal(format!("finding a free port: {e}")))
}

/// Kills and reaps workers left behind when the run fails.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Runs `pipeline args` at `parallelism` on `workers` worker processes with
/// `slots` slots each, and returns its cost over all processes.
pub fn run_on_workers(
    pipeline: &str,
    args: Vec<String>,
    parallelism: u32,
    workers: u32,
    slots: u32,
    run: RunConfig,
) -> Result<Cost> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("finding the weir binary: {e}")))?;
    let (grpc, http) = (free_port()?, free_port()?);
    let listen = format!("127.0.0.1:{grpc}");
    let (cpu_self, cpu_children, wall) = (
        cpu_seconds_of(libc::RUSAGE_SELF),
        cpu_seconds_of(libc::RUSAGE_CHILDREN),
        Instant::now(),
    );
    let config = CoordinatorConfig {
        pipeline: pipeline.to_string(),
        args,
        parallelism,
        max_parallelism: crate::keys::DEFAULT_MAX_PARALLELISM,
        run,
        listen: listen.clone(),
        http: format!("127.0.0.1:{http}"),
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(5),
        slot_sharing: false,
        linger: false,
        api_token: None,
    };
    let coordinator = std::thread::Builder::new()
        .name("weir-bench-coordinator".into())
        .spawn(move || run_coordinator(config))
        .map_err(|e| Error::Internal(format!("starting the coordinator: {e}")))?;
    // Start the workers once the coordinator listens, so they connect at once.
    let listening = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        if coordinator.is_finished() || Instant::now() > listening {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut spawned = Workers(Vec::new());
    for _ in 0..workers {
        let child = Command::new(&exe)
            .args(["worker", "--coordinator", &listen, "--slots"])
            .arg(slots.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| Error::Internal(format!("starting a worker process: {e}")))?;
        spawned.0.push(child);
    }
    coordinator
        .join()
        .map_err(|_| Error::Internal("the coordinator thread panicked".into()))??;
    // The coordinator told the workers to exit; reap them to count their CPU time.
    let deadline = Instant::now() + Duration::from_secs(10);
    for w in &mut spawned.0 {
        while w
            .try_wait()
            .map_err(|e| Error::Internal(format!("waiting for a worker: {e}")))?
            .is_none()
        {
            if Instant::now() > deadline {
                return Err(Error::Internal(
                    "a worker did not exit after the job finished".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(Cost {
        cpu: (cpu_seconds_of(libc::RUSAGE_SELF) - cpu_self)
            + (cpu_seconds_of(libc::RUSAGE_CHILDREN) - cpu_children),
        wall: wall.elapsed().as_secs_f64(),
    })
}
