//! `landscape exec` (under construction).

use std::process::ExitCode;

/// Arguments of `landscape exec`.
#[derive(clap::Args)]
pub struct Args {
    /// Arguments (not yet implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Runs `landscape exec`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("landscape exec: not implemented yet");
    ExitCode::from(2)
}

/// Hook that must run first in `main` (the runtime's helper-process entry point).
pub fn early_init() {}
