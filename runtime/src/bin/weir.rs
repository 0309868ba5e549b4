//! The `weir` binary: a thin shell around [`weir_runtime::cli`].

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weir_runtime::cli::{exit_code, main as run_cli, Cli};

/// Records are allocated on one task's thread and freed on another's; mimalloc
/// frees across threads without the arena lock that made glibc's malloc a
/// third of Nexmark q5's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    without_transparent_huge_pages();
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(error) = run_cli(cli) {
        let message = error.to_string();
        // Usage errors may carry a multi-line help text; everything else is one line.
        if message.contains('\n') {
            eprint!("{message}");
        } else {
            eprintln!("weir: error: {message}");
        }
        std::process::exit(exit_code(&error));
    }
}

/// Turns transparent huge pages off for this process, unless
/// `MIMALLOC_ALLOW_THP` is set (mimalloc's own switch: `1` keeps them).
///
/// mimalloc asks for huge pages for its arenas, so the first touch of any of
/// their memory zeroes 2 MiB at once. State, checkpoint buffers and batches
/// are mostly written once; on a virtual machine whose memory the host backs
/// lazily, those first touches made the system time of a join keeping 2 M
/// rows (Nexmark q20, 1 GB resident) vary from 0.2 to 10 CPU-seconds from
/// run to run, against 0.7 s steady without huge pages (user time 15 %
/// higher). Databases advise the same (Redis, MongoDB), and the JVM, as
/// Flink runs it, uses none unless told to.
#[allow(unsafe_code)]
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes no pointers; it sets a flag of this
        // process's memory map, which its threads and children share.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}
