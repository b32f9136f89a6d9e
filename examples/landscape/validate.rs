//! `landscape validate`, `upgrade`, `schema`.
use std::process::ExitCode;
/// Arguments of `landscape validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {}
/// Arguments of `landscape upgrade`.
#[derive(clap::Args)]
pub struct UpgradeArgs {}
/// Arguments of `landscape schema`.
#[derive(clap::Args)]
pub struct SchemaArgs {}
pub fn run_validate(_a: ValidateArgs) -> ExitCode { ExitCode::from(2) }
pub fn run_upgrade(_a: UpgradeArgs) -> ExitCode { ExitCode::from(2) }
pub fn run_schema(_a: SchemaArgs) -> ExitCode { ExitCode::from(2) }
