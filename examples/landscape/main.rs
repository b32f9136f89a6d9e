//! `landscape`: the command-line host that composes the landscape crates.
//!
//! Each subcommand lives in its own module; this file only dispatches.
//! Exit codes: 0 success, 1 the input has errors (or the child failed), 2 usage or I/O errors.

mod ctl;
mod exec;
#[cfg(feature = "k8s")]
mod k8s;
mod router;
mod up;
mod validate;
mod vault;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run multi-service landscapes described by a Codesphere-style ci.yml.
#[derive(Parser)]
#[command(name = "landscape", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check ci.yml files and report every problem with file:line:col.
    Validate(validate::ValidateArgs),
    /// Print a ci.yml upgraded to the newest schema (v0.4); change notes go to stderr.
    Upgrade(validate::UpgradeArgs),
    /// Print the JSON Schema (draft-07) of ci.yml, for editors.
    Schema(validate::SchemaArgs),
    /// Manage secrets: set, get, list, rm, rotate-key, audit verify, check.
    Vault(vault::Args),
    /// Serve the routes of a ci.yml on a public listener.
    Router(router::Args),
    /// Run one command in a rootless container, like `podman run --rm`.
    Exec(exec::Args),
    /// Run a landscape: prepare, test, every service with its replicas, and the router
    /// (again on a running landscape: apply the edited ci.yml).
    Up(up::Args),
    /// List the replicas of a running landscape.
    Ps(ctl::PsArgs),
    /// Print (and follow) the log lines of a running landscape's replicas.
    Logs(ctl::LogsArgs),
    /// Set the number of replicas of services: `landscape scale [DIR] api=3`.
    Scale(ctl::ScaleArgs),
    /// Restart the replicas of services (all when none are given).
    Restart(ctl::RestartArgs),
    /// Stop a running landscape: every replica, the router, the network and its state.
    Down(ctl::DownArgs),
    /// Translate a ci.yml to Kubernetes objects (`landscape k8s render`; `apply` and `diff`
    /// with the `k8s-apply` feature).
    #[cfg(feature = "k8s")]
    K8s(k8s::Args),
}

fn main() -> ExitCode {
    // Must run before anything else (threads, tokio): the runtime's helper-process hook.
    exec::early_init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Validate(a) => validate::run_validate(a),
        Command::Upgrade(a) => validate::run_upgrade(a),
        Command::Schema(a) => validate::run_schema(a),
        Command::Vault(a) => vault::run(a),
        Command::Router(a) => router::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Up(a) => {
            let code = up::run(a);
            // Nothing of the runtime outlives the command: helpers still tearing down
            // and the fork server are waited for.
            landscape::runtime::shutdown(std::time::Duration::from_secs(10));
            code
        }
        Command::Ps(a) => ctl::ps(a),
        Command::Logs(a) => ctl::logs(a),
        Command::Scale(a) => ctl::scale(a),
        Command::Restart(a) => ctl::restart(a),
        Command::Down(a) => ctl::down(a),
        #[cfg(feature = "k8s")]
        Command::K8s(a) => k8s::run(a),
    }
}
