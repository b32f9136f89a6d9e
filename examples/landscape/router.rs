//! `landscape router` (under construction).

use std::process::ExitCode;

/// Arguments of `landscape router`.
#[derive(clap::Args)]
pub struct Args {
    /// Arguments (not yet implemented).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

/// Runs `landscape router`.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("landscape router: not implemented yet");
    ExitCode::from(2)
}
