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
