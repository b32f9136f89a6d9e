//! `landscape vault` (under construction).

use std::process::ExitCode;

/// Arguments of `landscape vault`.
#[derive(clap::Args)]
pub struct Args {
    /// Arguments (not yet implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Runs `landscape vault`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("landscape vault: not implemented yet");
    ExitCode::from(2)
}
